"""Timing of keyed messages as a watching client sees them arrive, shared by the per-network
benchmarks: each sends lines ending in a `#key` and records when (and in what order) each key
shows up on the far side."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imbridge.config import parse_config
from imbridge.config.schema import Config
from imbridge.daemon import Daemon

if TYPE_CHECKING:
    from tests.servers.ircd import IrcUser
    from tests.servers.prosody import XmppUser


class Arrivals:
    """Arrival time and order of every `#key` a watcher saw; fed by its client's handler."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.order: list[str] = []

    def note(self, text: str) -> None:
        key = text.rsplit(" ", 1)[-1]
        if key.startswith("#"):
            self.arrived.setdefault(key, time.perf_counter())
            self.order.append(key)


class MucClock(Arrivals):
    """Arrival times of keyed bodies in one MUC, as a watching XMPP client sees them."""

    def __init__(self, user: XmppUser, room: str) -> None:
        super().__init__()
        self.room = room
        user.client.add_event_handler("groupchat_message", self._on)

    def _on(self, msg: Any) -> None:
        if msg["from"].bare == self.room:
            self.note(str(msg["body"]))


class ChannelClock(Arrivals):
    """Arrival times of keyed lines in one IRC channel, as a watching client sees them."""

    def __init__(self, user: IrcUser, channel: str) -> None:
        super().__init__()
        self.channel = channel.lower()
        user.conn.add_global_handler("pubmsg", self._on, -20)

    def _on(self, _conn: Any, event: Any) -> None:
        if event.target.lower() == self.channel:
            self.note(event.arguments[0])


def pct(values: list[float], p: float) -> float:
    """The `p`th percentile of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def latencies(
    say: Callable[[str], object], seen: Arrivals, tag: str, n: int, poll: float = 0.0002
) -> list[float]:
    """Milliseconds from sending to arrival for `n` messages at 5 msg/s."""
    out = []
    for i in range(n):
        key = f"#{tag}{i}"
        sent = time.perf_counter()
        say(f"ping {key}")
        deadline = sent + 10
        while key not in seen.arrived and time.perf_counter() < deadline:
            await asyncio.sleep(poll)
        if key in seen.arrived:
            out.append((seen.arrived[key] - sent) * 1000)
        await asyncio.sleep(max(0.0, 0.2 - (time.perf_counter() - sent)))  # 5 msg/s
    return out


async def burst(
    say: Callable[[str], object], seen: Arrivals, tag: str, n: int, poll: float = 0.002
) -> tuple[float, bool]:
    """Messages per second for `n` sent at once, and whether all arrived in order."""
    keys = [f"#{tag}{i}" for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        say(f"burst {key}")
    deadline = start + 120
    # Cheap to poll: the last key first (the burst shares the process with the bridge,
    # and a full check every poll would take CPU from what is measured).
    last = keys[-1]
    while time.perf_counter() < deadline and not (
        last in seen.arrived and all(k in seen.arrived for k in keys)
    ):
        await asyncio.sleep(poll)
    got = [k for k in seen.order if k.startswith(f"#{tag}")]
    elapsed = max(seen.arrived.get(k, deadline) for k in keys) - start
    return n / elapsed, got == keys


async def phase(
    say: Callable[[str], object], seen: Arrivals, tag: str, n_latency: int, n_burst: int
) -> tuple[list[float], float, bool]:
    """One path measured both ways: latencies at 5 msg/s (keys tagged `tag`), then a
    burst (tagged in upper case): (latencies in ms, messages/s, all in order)."""
    measured = await latencies(say, seen, tag, n_latency)
    rate, in_order = await burst(say, seen, tag.upper(), n_burst)
    return measured, rate, in_order


@asynccontextmanager
async def daemon_process(
    config_text: str, tmp: Path, say: Callable[[str], object], seen: Arrivals
) -> AsyncIterator[None]:
    """`imbridge run` in its own process, as deployed: the bench's clients, which poll for
    arrivals every 0.2 ms, no longer share its CPU time. Its state lives apart from the
    in-process daemon's; ready once a probe said with `say` shows up in `seen`."""
    path = tmp / "process.json"
    path.write_text(config_text.replace(str(tmp / "state"), str(tmp / "state-process")))
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "imbridge"), "run", "-c", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.perf_counter() + 30
        while "#probe" not in seen.arrived and time.perf_counter() < deadline:
            say("probe #probe")
            await asyncio.sleep(0.5)
        if "#probe" not in seen.arrived:
            raise RuntimeError("imbridge run did not relay the probe within 30 s")
        yield
    finally:
        proc.terminate()
        await proc.wait()


@dataclass(frozen=True)
class Measured:
    """One path: latencies at 5 msg/s (ms), burst rate (msg/s), all arrived in order."""

    latencies: list[float]
    rate: float
    in_order: bool


async def relay_paths(
    config_text: str,
    tmp: Path,
    say: Callable[[str], object],
    seen: Arrivals,
    *,
    sizes: tuple[int, int],
    adapter_only: Callable[[Config], AbstractAsyncContextManager[None]],
) -> dict[str, Measured]:
    """The bridged paths of one network's bench, each measured both ways with keys of its
    own: the adapter alone (`adapter_only`), the whole daemon in this process, and
    `imbridge run` in its own process. `sizes`: (latency messages, burst messages)."""
    n_latency, n_burst = sizes
    config = parse_config(config_text)
    async with adapter_only(config):
        adapter = Measured(*await phase(say, seen, "x", n_latency, n_burst))
    async with Daemon(config) as daemon:
        if not await daemon.ready(30):
            raise RuntimeError("the daemon did not connect within 30 s")
        bridged = Measured(*await phase(say, seen, "r", n_latency, n_burst))
    async with daemon_process(config_text, tmp, say, seen):
        process_latencies = await latencies(say, seen, "p", n_latency)
        process = Measured(process_latencies, *await burst(say, seen, "P", n_burst))
    return {"adapter": adapter, "bridged": bridged, "process": process}
