"""Core throughput and memory: router + policy + render + durable outbox, memory adapters
on both ends, in one process.

    .venv/bin/python bench/core.py [--events 20000] [--rooms 50]

Prints events/s for one source room (in order, each event committed before the next, as
an adapter delivers them) and for many rooms at once (group commit), both with the state
database on disk and in tmpfs, then the memory held per 10 000 queued events. Baseline:
the same events posted through the memory hub with no bridge, measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import ClassVar

from imbridge import logs
from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub, Post
from imbridge.config import parse_config
from imbridge.daemon import Daemon


def source(room: int, sources: int) -> str:
    return "a" if sources == 1 else f"a{room % sources}"


def config_text(state: Path, rooms: int, sources: int) -> str:
    gateways = "\n".join(
        f"  g{i}:\n    rooms:\n      - {{network: {source(i, sources)}, room: '#a{i}'}}\n"
        f"      - {{network: b, room: '#b{i}'}}"
        for i in range(rooms)
    )
    nets = "\n".join(f"  {source(i, sources)}: {{type: memory}}" for i in range(sources))
    return f"""
bridge: {{state_dir: '{state}', log: {{level: error}}}}
networks:
{nets}
  b: {{type: memory, nick: relay-b}}
gateways:
{gateways}
"""


async def start(state: Path, rooms: int, sources: int = 1) -> tuple[Daemon, MemoryHub]:
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    daemon = Daemon(parse_config(config_text(state, rooms, sources)), factory=build)
    await daemon.start()
    await daemon.ready(10)
    return daemon, hub


def baseline(events: int) -> float:
    """Posting through the hub to a plain subscriber: the cost of the fake network."""
    hub = MemoryHub()
    got: list[Post] = []

    class Listener:
        joined: ClassVar[set[str]] = {"#r"}

        def deliver(self, post: Post) -> None:
            got.append(post)

    hub._members.append(Listener())  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for i in range(events):
        hub.post("#r", "alice", f"message {i}")
    return events / (time.perf_counter() - t0)


async def relay_rate(state: Path, events: int, rooms: int, sources: int = 1) -> float:
    daemon, hub = await start(state, rooms, sources)
    try:
        b = daemon.adapters["b"]
        assert isinstance(b, MemoryAdapter)
        t0 = time.perf_counter()
        for i in range(events):
            hub.post(f"#a{i % rooms}", "alice", f"message {i}")
        while len(b.sent) < events:
            await asyncio.sleep(0.01)
        rate = events / (time.perf_counter() - t0)
        for r in range(rooms):  # in order per destination
            texts = [p.text for p in hub.in_room(f"#b{r}")]
            net = source(r, sources)
            assert texts == [f"<alice@{net}> message {i}" for i in range(r, events, rooms)]
        return rate
    finally:
        await daemon.stop(drain=0)


async def queued_memory(state: Path, queued: int) -> tuple[float, int]:
    """Bytes held per queued event while the destination is offline."""
    daemon, hub = await start(state, 1)
    try:
        b = daemon.adapters["b"]
        assert isinstance(b, MemoryAdapter)
        b.online = False
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(queued):
            hub.post("#a0", "alice", f"message {i}")
        assert daemon.outbox is not None
        while daemon.outbox.depth("b") < queued:
            await asyncio.sleep(0.01)
        hub.posts.clear()  # the fake server's own copies are not the bridge's memory
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return held / queued, daemon.outbox.depth("b")
    finally:
        await daemon.stop(drain=0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rooms", type=int, default=50)
    args = parser.parse_args()
    logs.setup("error", "console")
    base = baseline(args.events)
    print(f"baseline (hub only, no bridge):      {base:>10,.0f} events/s")
    for label, root in (("disk", None), ("tmpfs", "/dev/shm")):
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            one = await relay_rate(Path(tmp) / "one", args.events // 4, 1)
            many = await relay_rate(Path(tmp) / "many", args.events, args.rooms, 10)
        print(
            f"relay, 1 network, 1 room, state on {label:<5}:   {one:>10,.0f} events/s"
            f"  ({one / base:.4f} of baseline)"
        )
        print(
            f"relay, 10 networks, {args.rooms} rooms, {label:<5}:  {many:>10,.0f} events/s"
            f"  ({many / base:.4f} of baseline)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        per_event, depth = await queued_memory(Path(tmp), 10000)
    print(
        f"memory per 10 000 queued events:     {per_event * 10000 / 2**20:>10.1f} MiB"
        f"  ({per_event:,.0f} B/event, {depth} queued)"
    )


if __name__ == "__main__":
    asyncio.run(main())
