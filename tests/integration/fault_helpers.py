"""Shared pieces of the fault tests: the bridge as a real process, a three-network
gateway (ngircd, Prosody, Synapse) watched by ordinary clients of each network, a TCP gate
that orders reconnects, and the checks that turn what people saw into "exactly once, in
order".

Everything here talks to real servers; the only thing between the bridge and a server is
`Gate`, a plain byte forwarder that a test closes to hold a reconnect back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imbridge import testing
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher

poll = testing.eventually  # the name these tests knew; the helper is imbridge.testing's

HOST = "127.0.0.1"
# How a relayed line reads with the default nick format: "<alice@mx> m12".
RELAYED = re.compile(r"^<(?P<nick>[^@>]+)@(?P<net>[\w-]+)> (?P<tag>[a-z])(?P<n>\d+)$")
FAST = {"per_second": 10_000, "burst": 10_000}  # the servers are relaxed; the bridge need not pace


# -- the bridge as a process -----------------------------------------------------------


@dataclass
class BridgeProcess:
    """`imbridge run -c FILE` in its own session, with JSON logs appended to one file
    across restarts, so a test can count lifecycle events over the whole run."""

    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imbridge.cli", "run", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole session: no drain, no goodbye, nothing flushed."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def hup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after 20 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return -9

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log record so far (a line cut short by SIGKILL is skipped)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and line.endswith("}"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def count(self, event: str, **fields: object) -> int:
        return sum(
            1
            for e in self.events()
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def ready(self, times: int = 1, timeout: float = 60) -> None:
        """Waits for the `times`-th "ready" record (one per start), failing with the log
        if the process dies first."""

        def check() -> bool:
            if not self.alive():
                pytest.fail(f"the bridge exited:\n{self.tail()}")
            return self.count("ready") >= times

        await poll(check, timeout, f"bridge ready #{times}\n{self.tail(10)}")


# -- a gate in front of a server -------------------------------------------------------


@dataclass
class Gate:
    """A TCP forwarder to `port`. Closed, it hangs up on new connections at once (to the
    bridge it looks like a server still down), so a test can let its own watcher back
    into a restarted server before the bridge, which is how an IRC user, who only sees
    what is said while present, can witness every line the bridge sends afterwards."""

    port: int
    is_open: bool = True
    listen_port: int = 0
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self.is_open:
            await self._close(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.port)
        except OSError:
            await self._close(writer)
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst, writer, up_writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *ends: asyncio.StreamWriter,
    ) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        except OSError:
            pass
        finally:
            for end in ends:  # one side gone: the other follows, as with a real server
                await self._close(end)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        self._writers.discard(writer)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in list(self._writers):
            await self._close(writer)


# -- the three networks ------------------------------------------------------------------

# Every message the tests send must arrive, however fast they send it: no backlog limit
# (what a flood sheds is tests/unit/test_flood.py's subject, not these).
UNLIMITED: dict[str, Any] = {"backlog": None}


def xmpp_network(server: Prosody, jid: str, password: str) -> dict[str, Any]:
    return testing.xmpp_network(
        server, jid, password, ack_timeout=5, reconnect_max=2, rate_limit=FAST, **UNLIMITED
    )


def matrix_network(server: SynapseServer, relay: MatrixUser) -> dict[str, Any]:
    return testing.matrix_network(
        server.url, relay, sync_timeout_ms=1000, rate_limit=FAST, **UNLIMITED
    )


def irc_network(server: Ircd, **extra: Any) -> dict[str, Any]:
    return server.network(rate_limit=FAST, **(UNLIMITED | extra))


def config_text(
    state: Path,
    networks: dict[str, dict[str, Any]],
    gateways: dict[str, list[tuple[str, str]]],
    *,
    level: str = "info",
) -> str:
    """A bridge config (JSON is YAML): `gateways` maps a name to (network, room) pairs."""
    return json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": level, "format": "json"}},
        "networks": networks,
        "gateways": {name: {"nick_format": "<{nick}@{network}> ",
                            "rooms": [{"network": n, "room": r} for n, r in rooms]}
                     for name, rooms in gateways.items()},
        "archive": {"enabled": False},
    }, indent=1)  # fmt: skip


@dataclass
class People:
    """One ordinary user per network, each in the gateway's room there, plus the relay
    accounts the bridge logs in with."""

    ivan: IrcUser
    xavier: XmppUser
    alice: Watcher
    chan: str
    muc: str
    room: str
    relay_mx: MatrixUser
    relay_jid: str
    relay_pw: str

    @classmethod
    async def gather(
        cls, ircd: Ircd, prosody: Prosody, synapse: SynapseServer, stack: contextlib.AsyncExitStack
    ) -> People:
        relay_mx = await asyncio.to_thread(synapse.register)
        relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
        chan, muc = ircd.channel("fault"), prosody.room("fault")
        ivan = await IrcUser.connect(ircd, "ivan")
        stack.push_async_callback(ivan.close)
        await ivan.join(chan)
        xavier = await XmppUser.login(prosody)
        stack.push_async_callback(xavier.close)
        await xavier.join(muc, "xavier")
        alice_account = await asyncio.to_thread(synapse.register)
        alice = await stack.enter_async_context(Watcher(synapse, alice_account))
        room = await alice.create_room(invite=[relay_mx.user_id])
        return cls(ivan, xavier, alice, chan, muc, room, relay_mx, relay_jid, relay_pw)

    def networks(
        self, ircd: Ircd, prosody: Prosody, synapse: SynapseServer, **irc: Any
    ) -> dict[str, dict[str, Any]]:
        return {
            "irc": irc_network(ircd, **irc),
            "xm": xmpp_network(prosody, self.relay_jid, self.relay_pw),
            "mx": matrix_network(synapse, self.relay_mx),
        }

    def rooms(self) -> list[tuple[str, str]]:
        return [("irc", self.chan), ("xm", self.muc), ("mx", self.room)]

    def into_irc(self) -> int:
        """Relayed numbered lines Ivan has seen in the channel so far."""
        return sum(1 for e in irc_timeline(self.ivan, self.chan) if e is not None)

    def talk(
        self, counts: tuple[int, int, int], gaps: tuple[float, float, float], sends: IrcSends
    ) -> list[asyncio.Task[None]]:
        """Alice (Matrix), Xavier (XMPP) and Ivan (IRC) each say their numbered lines
        ("m1", "x1", "i1", ...), `counts` of them `gaps` seconds apart; Ivan notes in
        `sends` whether the relay was in the channel, as he saw it, when he spoke."""

        async def from_matrix() -> None:
            for n in range(1, counts[0] + 1):
                await self.alice.text(self.room, f"m{n}")
                await asyncio.sleep(gaps[0])

        async def from_xmpp() -> None:
            for n in range(1, counts[1] + 1):
                self.xavier.say(self.muc, f"x{n}")
                await asyncio.sleep(gaps[1])

        async def from_irc() -> None:
            for n in range(1, counts[2] + 1):
                present, epoch = relay_presence(self.ivan, self.chan)
                (sends.present.setdefault(epoch, []) if present else sends.absent).append(n)
                self.ivan.say(self.chan, f"i{n}")
                await asyncio.sleep(gaps[2])

        return [asyncio.create_task(f()) for f in (from_matrix, from_xmpp, from_irc)]

    async def sentinels(self, counts: tuple[int, int, int]) -> None:
        """One more numbered line from each person, waited for in every other room: a
        late repeat of anything said before would have arrived first, since each
        destination sends in commit order. Waiting for nothing to happen is never a
        sleep."""
        m, x, i = (n + 1 for n in counts)
        await self.alice.text(self.room, f"m{m}")
        self.xavier.say(self.muc, f"x{x}")
        self.ivan.say(self.chan, f"i{i}")
        relay = self.relay_mx.user_id
        await testing.eventually(
            lambda: (
                {("m", m), ("x", x)} <= set(irc_timeline(self.ivan, self.chan))
                and m in numbered(self.xavier.bodies(self.muc), "m")
                and i in numbered(self.xavier.bodies(self.muc), "i")
                and x in numbered(self.alice.bodies(self.room), "x")
                and i in numbered(self.alice.bodies(self.room, sender=relay), "i")
            ),
            60,
            "the sentinels",
        )


# -- what arrived ------------------------------------------------------------------------


@dataclass
class IrcSends:
    """What Ivan said and whether, as he saw it, the relay was in the channel then."""

    present: dict[int, list[int]] = field(default_factory=dict)  # epoch -> numbers
    absent: list[int] = field(default_factory=list)


def relay_presence(ivan: IrcUser, chan: str) -> tuple[bool, int]:
    """(in the channel now, how many times it joined) from Ivan's JOIN/QUIT view."""
    joins = leaves = 0
    for s in ivan.seen:
        if not s.nick.startswith("relay"):
            continue
        if s.kind == "join" and s.target.lower() == chan.lower():
            joins += 1
        elif s.kind == "quit" or (s.kind in ("part", "kick") and s.target.lower() == chan.lower()):
            leaves += 1
    return joins > leaves, joins


def irc_timeline(ivan: IrcUser, chan: str) -> list[tuple[str, int] | None]:
    """Relayed numbered lines in the channel, in arrival order; None marks a relay QUIT."""
    out: list[tuple[str, int] | None] = []
    for s in ivan.seen:
        if s.kind == "quit" and s.nick.startswith("relay"):
            out.append(None)
        elif s.kind == "pubmsg" and s.target.lower() == chan.lower():
            m = RELAYED.match(s.text)
            if m and m["tag"] in "mx":
                out.append((m["tag"], int(m["n"])))
    return out


def split_kill_duplicates(
    timeline: list[tuple[str, int] | None],
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Separates the one repeat a kill may cause (the last line before a relay QUIT,
    sent again as the first line after it) from everything else."""
    lines: list[tuple[str, int]] = []
    repeats: list[tuple[str, int]] = []
    after_quit = False
    for entry in timeline:
        if entry is None:
            after_quit = True
            continue
        if after_quit and lines and entry == lines[-1]:
            repeats.append(entry)
        else:
            lines.append(entry)
        after_quit = False
    return lines, repeats


def numbered(texts: Iterable[str], tag: str) -> list[int]:
    """The numbers of relayed lines "<nick@net> {tag}{n}", in the order seen."""
    out = []
    for text in texts:
        m = RELAYED.match(text)
        if m and m["tag"] == tag:
            out.append(int(m["n"]))
    return out


def exactly_once_in_order(got: list[int], want: list[int]) -> str:
    """ "" when `got` is `want`; otherwise what is wrong, briefly."""
    if got == want:
        return ""
    seen: dict[int, int] = {}
    for n in got:
        seen[n] = seen.get(n, 0) + 1
    dups = sorted(n for n, c in seen.items() if c > 1)
    missing = sorted(set(want) - set(got))
    disorder = [(a, b) for a, b in itertools.pairwise(got) if b < a]
    return (
        f"{len(got)} of {len(want)} arrived; duplicated {dups[:20]}; missing {missing[:20]}"
        f" ({len(missing)}); out of order at {disorder[:10]}"
    )


def matrix_history(server: SynapseServer, token: str, room: str) -> list[dict[str, Any]]:
    """Every event of `room` from the homeserver's own history, oldest first: what the
    room really holds, whatever a syncing client saw."""
    events: list[dict[str, Any]] = []
    start: str | None = None
    quoted = urllib.parse.quote(room)
    while True:
        query = {"dir": "f", "limit": "1000"} | ({"from": start} if start else {})
        path = f"/_matrix/client/v3/rooms/{quoted}/messages?{urllib.parse.urlencode(query)}"
        page = server.api("GET", path, token=token)
        events += page.get("chunk", [])
        if not page.get("chunk") or not page.get("end"):
            return events
        start = page["end"]


def matrix_bodies(server: SynapseServer, token: str, room: str, sender: str) -> list[str]:
    return [
        str(e["content"].get("body"))
        for e in matrix_history(server, token, room)
        if e.get("type") == "m.room.message" and e.get("sender") == sender
    ]


async def xmpp_archive_bodies(user: XmppUser, room: str) -> list[str]:
    """Bodies of the room's MAM archive (XEP-0313), oldest first."""
    return [m.findtext("{jabber:client}body") or "" for m in await user.archive(room)]
