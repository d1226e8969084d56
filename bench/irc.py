"""IRC relay latency and throughput between two channels on a loopback ngircd.

    .venv/bin/python bench/irc.py [--latency 100] [--burst 2000] [--impl ngircd|inspircd]

Baseline, measured in the same run: the direct client path (Carol says it in channel B,
Bob reads it there; Carol then leaves). Bridged: Alice, who is only in channel A, says it
there, imbridge relays it into channel B, Bob reads the copy; once through the IRC
adapter alone (its sink sends at once: what the adapter adds), once through the whole
daemon (state database, policy, outbox) in this process, and once through `imbridge run`
in its own process, as deployed. Last, the floor (`bench/floor.py`): a bare Python relay
in its own process that only copies the line, which is what this machine charges any
Python process for waking and handling one line, and the state database commit of one
relayed message, timed after 0.2 s idle and back to back. Prints
p50/p99 latency at 5 msg/s and the latency added over the direct path, then in-order
throughput for a burst of `--burst` lines on relaxed flood limits, checking that none was
lost, duplicated or reordered. The bridged path crosses the server twice (A, then B) where
the direct path crosses it once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

# Run as a script, this file's folder is sys.path[0] and `bench/irc.py` would shadow the
# `irc` library: the project root takes its place.
sys.path.remove(sys.path[0])
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arrivals import ChannelClock, latencies, pct, phase, relay_paths
from bench.floor import cold_commit, floor_process
from imbridge import logs
from imbridge.adapter import Outgoing
from imbridge.adapters.irc import IrcAdapter, IrcConfig
from imbridge.config.schema import Config
from imbridge.events import Event, Message
from imbridge.testing import DictCursors
from tests.servers.ircd import Ircd, IrcUser, launch


@asynccontextmanager
async def adapter_only(config: Config, dest: str) -> AsyncIterator[None]:
    """The IRC adapter relaying A -> B by itself: its sink sends at once, with no state
    database, policy or outbox in between (what the adapter itself adds)."""
    net = config.networks["irc"]
    assert isinstance(net, IrcConfig)
    adapter = IrcAdapter("irc", net, DictCursors())

    async def sink(event: Event) -> None:
        if isinstance(event, Message) and event.origin.room != dest:
            text = f"<{event.origin.sender.name}@irc> {event.text}"
            relayed = dataclasses.replace(event, text=text, rich=None)
            await adapter.send(Outgoing(room=dest, event=relayed, txn_id=event.id))

    await adapter.start(sink)
    try:
        for room in (r.room for r in config.gateways["g"].rooms):
            await adapter.join(room)
        yield
    finally:
        await adapter.aclose()


async def main(args: argparse.Namespace) -> None:
    logs.setup(level="warning", fmt="console")
    with tempfile.TemporaryDirectory() as tmp:
        server = launch(args.impl, "relaxed", Path(tmp) / "ircd")
        try:
            await run(args, server, Path(tmp))
        finally:
            server.stop()


async def run(args: argparse.Namespace, server: Ircd, tmp: Path) -> None:
    alice, bob, carol = await asyncio.gather(IrcUser.connect(server, "alice"),
                                             IrcUser.connect(server, "bob"),
                                             IrcUser.connect(server, "carol"))  # fmt: skip
    a, b = server.channel("a"), server.channel("b")
    await asyncio.gather(alice.join(a), bob.join(b), carol.join(b))
    clock = ChannelClock(bob, b)
    config_text = json.dumps({
        "bridge": {"state_dir": str(tmp / "state"), "log": {"level": "warning"}},
        "networks": {"irc": server.network(
            rate_limit={"per_second": 1_000_000, "burst": 1_000_000})},
        "gateways": {"g": {"rooms": [{"network": "irc", "room": a},
                                     {"network": "irc", "room": b}]}},
        "archive": {"enabled": False},
    })  # fmt: skip
    to_a = functools.partial(alice.say, a)
    try:
        # Carol is in channel B for the direct path only: her copies of relayed lines
        # would otherwise be parsed in this process while Bob's are timed.
        direct, direct_rate, direct_ok = await phase(
            functools.partial(carol.say, b), clock, "d", args.latency, args.burst
        )
        await carol.close()
        paths = await relay_paths(
            config_text, tmp, to_a, clock, sizes=(args.latency, args.burst),
            adapter_only=lambda config: adapter_only(config, b),
        )  # fmt: skip
        bare, bare_rate, bare_ok = dataclasses.astuple(paths["adapter"])
        bridged, bridged_rate, bridged_ok = dataclasses.astuple(paths["bridged"])
        process, process_rate, process_ok = dataclasses.astuple(paths["process"])
        async with floor_process(server.host, server.port, a, b, say=to_a, seen=clock):
            floor = await latencies(to_a, clock, "f", args.latency)
        commit_idle, commit_busy = await cold_commit()
    finally:
        await alice.close()
        await bob.close()
    for name, values in (("direct", direct), ("floor", floor), ("adapter", bare),
                         ("bridged", bridged), ("process", process)):  # fmt: skip
        print(f"latency {name:8} p50 {pct(values, 50):7.3f} ms  p99 {pct(values, 99):7.3f} ms"
              f"  ({len(values)}/{args.latency} at 5 msg/s)")  # fmt: skip
    print(f"added latency (daemon)  p50 {pct(bridged, 50) - pct(direct, 50):7.3f} ms  "
          f"p99 {pct(bridged, 99) - pct(direct, 99):7.3f} ms")  # fmt: skip
    print(f"added latency (process) p50 {pct(process, 50) - pct(direct, 50):7.3f} ms  "
          f"p99 {pct(process, 99) - pct(direct, 99):7.3f} ms")  # fmt: skip
    print(f"added latency (floor)   p50 {pct(floor, 50) - pct(direct, 50):7.3f} ms  "
          f"p99 {pct(floor, 99) - pct(direct, 99):7.3f} ms")  # fmt: skip
    print(f"added latency (adapter) p50 {pct(bare, 50) - pct(direct, 50):7.3f} ms  "
          f"p99 {pct(bare, 99) - pct(direct, 99):7.3f} ms")  # fmt: skip
    print(f"one relay commit        p50 {commit_idle:7.3f} ms after 0.2 s idle, "
          f"{commit_busy:.3f} ms back to back")  # fmt: skip
    print(f"throughput direct  {direct_rate:8.0f} msg/s  in order, complete: {direct_ok}")
    print(f"throughput adapter {bare_rate:8.0f} msg/s  in order, complete: {bare_ok}")
    print(f"throughput bridged {bridged_rate:8.0f} msg/s  in order, complete: {bridged_ok}")
    print(f"throughput process {process_rate:8.0f} msg/s  in order, complete: {process_ok}")
    print(f"ratio to direct: throughput adapter {bare_rate / direct_rate:.2f}, "
          f"daemon {bridged_rate / direct_rate:.2f}, process {process_rate / direct_rate:.2f}; "
          f"p50 latency adapter "
          f"{statistics.median(bare) / statistics.median(direct):.2f}x, daemon "
          f"{statistics.median(bridged) / statistics.median(direct):.2f}x, process "
          f"{statistics.median(process) / statistics.median(direct):.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=100, help="messages per latency run")
    parser.add_argument("--burst", type=int, default=2000, help="lines per throughput run")
    parser.add_argument("--impl", choices=["ngircd", "inspircd"], default="ngircd")
    asyncio.run(main(parser.parse_args()))
