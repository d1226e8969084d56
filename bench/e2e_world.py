"""The end-to-end benchmark's world: ngircd, Prosody and Synapse on loopback, a sender and
an independent observer on each network, the rooms, and the config imbridge runs with."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nio

from imbridge import testing
from tests.servers.ircd import Ircd, IrcUser, launch
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import RELAXED_LIMITS, SynapseServer

wait_until = functools.partial(testing.eventually, interval=0.005)

MIB = 1024 * 1024
NETS = ("irc", "xm", "mx")
HIGH_RATE = {"per_second": 1_000_000, "burst": 1_000_000}


# --- what the observers saw -------------------------------------------------------------


@dataclass
class Arrivals:
    """First arrival of each keyed message on each network, in arrival order."""

    first: dict[tuple[str, str], float] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in NETS})
    duplicates: int = 0

    def see(self, net: str, text: str) -> None:
        key = text.rsplit(" ", 1)[-1]
        if not key.startswith("k"):
            return
        now = time.perf_counter()
        if (net, key) in self.first:
            self.duplicates += 1
            return
        self.first[(net, key)] = now
        self.order[net].append(key)

    def has(self, net: str, keys: Iterable[str]) -> bool:
        return all((net, k) in self.first for k in keys)

    def last(self, net: str, keys: Iterable[str]) -> float:
        return max(self.first[(net, k)] for k in keys)

    def in_order(self, net: str, keys: list[str]) -> bool:
        wanted = set(keys)
        return [k for k in self.order[net] if k in wanted] == keys


class MatrixObserver:
    """A matrix-nio user syncing in a loop, timing each body as its sync returns."""

    def __init__(self, client: nio.AsyncClient, arrivals: Arrivals) -> None:
        self.client = client
        self.arrivals = arrivals
        self.rooms: set[str] = set()
        self.side: dict[str, float] = {}  # arrivals in the direct-baseline room

    async def run(self, side_room: str) -> None:
        while True:
            resp = await self.client.sync(timeout=5000)
            if not isinstance(resp, nio.SyncResponse):
                await asyncio.sleep(0.1)
                continue
            now = time.perf_counter()
            for room_id, info in resp.rooms.join.items():
                for ev in info.timeline.events:
                    body = ev.source.get("content", {}).get("body")
                    if not isinstance(body, str):
                        continue
                    if room_id == side_room:
                        self.side.setdefault(body.rsplit(" ", 1)[-1], now)
                    elif room_id in self.rooms:
                        self.arrivals.see("mx", body)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a live process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024 / MIB
    return fields["VmRSS"], fields["VmHWM"]


# --- the world: servers, people, rooms --------------------------------------------------


@dataclass
class World:
    """The servers, the rooms, a sender and an observer on each network, and the
    config imbridge runs with."""

    tmp: Path
    ircd: Ircd
    prosody: Prosody
    synapse: SynapseServer
    arrivals: Arrivals
    chan: str
    muc: str
    room: str
    side_room: str
    isend: IrcUser
    iobs: IrcUser
    xsend: XmppUser
    xobs: XmppUser
    msend: nio.AsyncClient
    mobs: MatrixObserver
    config: dict[str, Any]

    def irc_say(self, text: str) -> None:
        self.isend.say(self.chan, text)

    def xmpp_say(self, text: str) -> None:
        self.xsend.say(self.muc, text)

    async def matrix_say(self, text: str, room: str | None = None) -> None:
        resp = await self.msend.room_send(
            room or self.room, "m.room.message", {"msgtype": "m.text", "body": text}
        )
        assert isinstance(resp, nio.RoomSendResponse), resp

    async def say(self, net: str, text: str) -> None:
        if net == "irc":
            self.irc_say(text)
        elif net == "xm":
            self.xmpp_say(text)
        else:
            await self.matrix_say(text)

    async def close(self) -> None:
        await self.isend.close()
        await self.iobs.close()
        await self.xsend.close()
        await self.xobs.close()
        await self.msend.close()
        await self.mobs.client.close()


def start_servers(tmp: Path) -> tuple[Ircd, Prosody, SynapseServer]:
    """All three, Synapse (seconds) in a thread while the other two start."""
    prosody = Prosody(state=tmp / "prosody")
    prosody.write_config()
    synapse = SynapseServer(tmp / "synapse", dict(RELAXED_LIMITS))
    errors: list[BaseException] = []

    def start_synapse() -> None:
        try:
            synapse.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in this thread
            errors.append(exc)

    thread = threading.Thread(target=start_synapse)
    thread.start()
    prosody.start()
    ircd = launch("ngircd", "relaxed", tmp / "ngircd")
    thread.join()
    if errors:
        raise errors[0]
    return ircd, prosody, synapse


async def populate(tmp: Path, ircd: Ircd, prosody: Prosody, synapse: SynapseServer,
                   full_matrix: bool) -> World:  # fmt: skip
    """Senders and observers on every network, the rooms, and the relay's accounts."""
    arrivals = Arrivals()
    chan, muc = ircd.channel("e2e"), prosody.room("e2e")
    isend, iobs = await asyncio.gather(IrcUser.connect(ircd, "ann"),
                                       IrcUser.connect(ircd, "obs"))  # fmt: skip
    await asyncio.gather(isend.join(chan), iobs.join(chan))

    def on_irc(_conn: Any, event: Any) -> None:
        if event.target.lower() == chan.lower():
            arrivals.see("irc", str(event.arguments[0]))

    for kind in ("pubmsg", "pubnotice", "action"):
        iobs.conn.add_global_handler(kind, on_irc, -20)

    xsend, xobs = await asyncio.gather(XmppUser.login(prosody), XmppUser.login(prosody))
    await xsend.join(muc, "xena")
    await xobs.join(muc, "xobs")

    def on_xmpp(msg: Any) -> None:
        if msg["from"].bare == muc:
            arrivals.see("xm", str(msg["body"]))

    xobs.client.add_event_handler("groupchat_message", on_xmpp)

    relay_mx, send_u, obs_u = [await asyncio.to_thread(synapse.register) for _ in range(3)]
    msend = nio.AsyncClient(synapse.url, send_u.user_id, device_id=send_u.device_id)
    mobs = nio.AsyncClient(synapse.url, obs_u.user_id, device_id=obs_u.device_id)
    for client, user in ((msend, send_u), (mobs, obs_u)):
        client.access_token, client.user_id = user.access_token, user.user_id
    rooms = []
    for _ in range(2):  # the bridged room, and one for the direct baseline
        resp = await msend.room_create(invite=[obs_u.user_id, relay_mx.user_id])
        assert isinstance(resp, nio.RoomCreateResponse), resp
        assert isinstance(await mobs.join(resp.room_id), nio.JoinResponse)
        rooms.append(resp.room_id)
    await mobs.sync(timeout=0, full_state=True)
    observer = MatrixObserver(mobs, arrivals)
    observer.rooms.add(rooms[0])

    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    rules = []
    if not full_matrix:
        rules.append({"name": "bench-burst-stays-off-matrix", "action": "deny",
                      "to": {"network": "mx"}, "text": "^(burst|soak) "})  # fmt: skip
    config = {
        "bridge": {"state_dir": str(tmp / "state"),
                   "log": {"level": "info", "format": "json"}},
        "networks": {
            "irc": ircd.network(nick="relay", rate_limit=HIGH_RATE),
            "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                   "host": prosody.host, "port": prosody.port, "tls": "plain",
                   "nick": "relay", "rate_limit": HIGH_RATE},
            "mx": {"type": "matrix", "homeserver": synapse.url, "user_id": relay_mx.user_id,
                   "access_token": relay_mx.access_token, "rate_limit": HIGH_RATE},
        },
        "gateways": {"e2e": {"rooms": [
            {"network": "irc", "room": chan}, {"network": "xm", "room": muc},
            {"network": "mx", "room": rooms[0]}]}},
        "policy": {"default": "allow", "rules": rules},
    }  # fmt: skip
    return World(tmp, ircd, prosody, synapse, arrivals, chan, muc, rooms[0], rooms[1],
                 isend, iobs, xsend, xobs, msend, observer, config)  # fmt: skip
