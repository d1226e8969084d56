"""Each server (ngircd, Prosody, Synapse) stopped for 10 s and started again on the same
state and port while people on the other two networks keep talking: what they said waits
in the outbox and arrives once, in order; what the stopped network's people said before
and after arrives too; the other two connections are never dropped.

What arrived is read where it is authoritative: the Matrix room's history from the
homeserver, the MUC's archive (MAM) from Prosody, and an IRC user who is in the channel
(IRC keeps nothing): a new one after an ngircd restart, let in before the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.integration.fault_helpers import (
    Gate,
    People,
    config_text,
    exactly_once_in_order,
    matrix_bodies,
    numbered,
    poll,
    xmpp_archive_bodies,
)
from tests.servers.ircd import Ircd, IrcUser, launch
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.integration

OTHERS = 120  # from each of the two networks that stay up, over ~14 s
OWN = 20  # from the restarted network, before the stop and again after the start
DOWN = 10.0  # seconds the server stays stopped: the figure
TAGS = {"irc": "i", "xm": "x", "mx": "m"}
Seen = dict[str, dict[str, list[int]]]  # destination -> origin tag -> numbers


def ensure_running(server: Prosody | SynapseServer) -> None:
    if server.proc is None:
        server.start()


@dataclass
class Scene:
    """The servers, the people in the gateway's three rooms, and the gate the bridge
    reaches IRC through."""

    ircd: Ircd
    prosody: Prosody
    synapse: SynapseServer
    people: People
    gate: Gate
    stack: contextlib.AsyncExitStack
    irc_users: list[IrcUser] = field(default_factory=list)
    xmpp_users: list[XmppUser] = field(default_factory=list)

    async def say(self, net: str, n: int) -> None:
        text = f"{TAGS[net]}{n}"
        if net == "irc":
            self.irc_users[-1].say(self.people.chan, text)
        elif net == "xm":
            self.xmpp_users[-1].say(self.people.muc, text)
        else:
            await self.people.alice.text(self.people.room, text)

    async def talk(self, net: str, numbers: range, pace: float) -> None:
        for n in numbers:
            await self.say(net, n)
            await asyncio.sleep(pace)

    def server(self, net: str) -> Ircd | Prosody | SynapseServer:
        servers: dict[str, Ircd | Prosody | SynapseServer] = {
            "irc": self.ircd,
            "xm": self.prosody,
            "mx": self.synapse,
        }
        return servers[net]

    async def stop(self, net: str) -> None:
        server = self.server(net)
        self.gate.is_open = False
        await asyncio.to_thread(server.stop)

    async def start(self, net: str) -> None:
        """Starts the server again and lets its people back in (on IRC before the
        bridge, whose reconnects the gate holds back until then)."""
        await asyncio.to_thread(self.server(net).start)
        if net == "irc":
            ivan = await IrcUser.connect(self.ircd, "ivan")
            self.stack.push_async_callback(ivan.close)
            await ivan.join(self.people.chan)
            self.irc_users.append(ivan)
        elif net == "xm":
            xavier = await XmppUser.login(self.prosody)
            self.stack.push_async_callback(xavier.close)
            await xavier.join(self.people.muc, "xavier2")
            self.xmpp_users.append(xavier)
        self.gate.is_open = True

    def irc_parts(self, tag: str) -> list[list[int]]:
        """Lines relayed into the channel, as each successive IRC user saw them."""
        return [numbered(u.texts(self.people.chan), tag) for u in self.irc_users]

    async def seen(self) -> Seen:
        """What each room holds now, by origin."""
        p = self.people
        xmpp = await xmpp_archive_bodies(self.xmpp_users[-1], p.muc)
        matrix = await asyncio.to_thread(
            matrix_bodies, self.synapse, p.alice.user.access_token, p.room, p.relay_mx.user_id
        )
        return {
            "irc": {t: [n for part in self.irc_parts(t) for n in part] for t in "xm"},
            "xm": {t: numbered(xmpp, t) for t in "im"},
            "mx": {t: numbered(matrix, t) for t in "ix"},
        }


def problems(seen: Seen, want: dict[str, list[int]]) -> dict[str, str]:
    found = {
        f"{src} -> {dest}": exactly_once_in_order(seen[dest][TAGS[src]], want[src])
        for dest in TAGS
        for src in TAGS
        if src != dest
    }
    return {k: v for k, v in found.items() if v}


async def arrived(scene: Scene, want: dict[str, list[int]], timeout: float) -> Seen:
    """Polls the rooms until each holds the last message of each stream (order is kept,
    so everything before it was sent), or `timeout`; returns what they hold."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await scene.seen()
        done = all(
            want[src][-1] in seen[dest][TAGS[src]] for dest in TAGS for src in TAGS if src != dest
        )
        if done or asyncio.get_running_loop().time() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def settled(scene: Scene, want: dict[str, list[int]], timeout: float) -> Seen:
    """What the rooms hold once every stream arrived and then one more message from each
    network (a sentinel, added to `want`) did too: each way keeps its order, so a
    duplicate of anything before a sentinel would have shown before it."""
    await arrived(scene, want, timeout)
    for src in TAGS:
        want[src].append(want[src][-1] + 1)
        await scene.say(src, want[src][-1])
    return await arrived(scene, want, timeout)


@pytest.mark.parametrize("down", ["irc", "xm", "mx"])
async def test_server_stopped_10s_mid_stream_loses_and_duplicates_nothing(
    down: str,
    ngircd: Ircd,
    prosody: Prosody,
    synapse: SynapseServer,
    tmp_path: Path,
) -> None:
    # The IRC case gets its own ngircd, so the gate can hold the bridge back while the
    # watcher gets back into the channel and sees every line the bridge sends afterwards.
    ircd = launch("ngircd", "relaxed", tmp_path / "ngircd") if down == "irc" else ngircd
    async with contextlib.AsyncExitStack() as stack:
        if down == "irc":
            stack.callback(ircd.stop)
        else:  # a shared server is left running, whatever happens here
            stack.callback(ensure_running, prosody)
            stack.callback(ensure_running, synapse)
        gate = Gate(ircd.port)
        await gate.start()
        stack.push_async_callback(gate.aclose)
        people = await People.gather(ircd, prosody, synapse, stack)
        scene = Scene(ircd, prosody, synapse, people, gate, stack, [people.ivan], [people.xavier])
        networks = people.networks(ircd, prosody, synapse, port=gate.listen_port)
        config = parse_config(
            config_text(tmp_path / "state", networks, {"g": people.rooms()}, level="warning")
        )
        want = {net: list(range(1, (2 * OWN if net == down else OTHERS) + 1)) for net in TAGS}
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            adapter = daemon.adapters[down]
            others = [n for n in TAGS if n != down]
            streams = [
                asyncio.create_task(scene.talk(n, range(1, OTHERS + 1), 0.12)) for n in others
            ]
            try:
                await scene.talk(down, range(1, OWN + 1), 0.02)
                if down == "irc":  # IRC keeps nothing: what it said must be read before
                    await poll(
                        lambda: len(numbered(people.xavier.bodies(people.muc), "i")) >= OWN,
                        15,
                        "IRC lines relayed before the stop",
                    )
                await scene.stop(down)
                await poll(lambda: not adapter.connected, 30, "outage noticed")
                await asyncio.sleep(DOWN)
                await scene.start(down)
                await poll(lambda: adapter.connected, 30, "bridge reconnected")
                if down == "irc":  # the relay's JOIN, seen by the watcher let in first
                    await poll(
                        lambda: any(
                            s.kind == "join" and s.nick.startswith("relay")
                            for s in scene.irc_users[-1].seen
                        ),
                        30,
                        "the relay back in the channel",
                    )
                await scene.talk(down, range(OWN + 1, 2 * OWN + 1), 0.02)
                await asyncio.gather(*streams)
            finally:
                for task in streams:
                    task.cancel()
                await asyncio.gather(*streams, return_exceptions=True)
            seen = await settled(scene, want, 30)
            reconnects = dict(daemon.reconnects)
        assert reconnects.get(down, 0) >= 1, reconnects
        assert all(reconnects.get(n, 0) == 0 for n in others), reconnects
        failed = problems(seen, want)
        assert not failed, json.dumps(failed, indent=1)
