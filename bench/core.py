"""Core throughput and memory: router + policy + render + durable outbox, memory adapters
on both ends, in one process.

    .venv/bin/python bench/core.py [--events 20000] [--rooms 50] [--hooks-only]
    .venv/bin/python bench/core.py --database postgresql://USER:PASS@HOST/DB | --postgres

Prints events/s for one source room (in order, each event committed before the next, as
an adapter delivers them) and for many rooms at once (group commit), both with the state
database on disk and in tmpfs, then the memory held per 10 000 queued events. Baseline:
the same events posted through the memory hub with no bridge, measured in this run.

Then the policy cost of one event as the relay pays it (texts extracted and normalised
once, then a decision for each destination): a 60 KB formatted body, 20 text rules, 5
destinations, against a baseline of a one-line message under the same rules.

The destination's backlog limit is raised past what one run queues, so nothing is shed
but its bookkeeping (fair turns, per-sender counts) is paid on every event.

Last, one room with an HTTP policy hook answering in 1 ms and two record sinks (an HTTP
collector and a JSON-lines file), against the same room without them, in this run: the
median ratio of `--rounds` pairs, with the event loop's CPU per event beside each rate.

With `--database URL` (an empty database the URL's role owns: its tables are emptied
before each round) or `--postgres` (a PostgreSQL server of its own on loopback, started
for the run), it prints instead the persisted relay rates on PostgreSQL against the same
rounds on SQLite (state on disk) in this run, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from imbridge import logs
from imbridge.adapter import Capabilities, Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub, Post
from imbridge.config import parse_config
from imbridge.config.schema import Policy
from imbridge.daemon import Daemon, setup_for
from imbridge.events import Message, Origin, RichText, Sender, new_event_id
from imbridge.outbox import Item, txn_id_for
from imbridge.policy import Destination, compile_policy, decide, policy_texts
from imbridge.render import render

ROOT = Path(__file__).resolve().parent.parent
"""The project's root, where `tests.servers` lives."""

SERVICE = """
import asyncio, sys
from aiohttp import web
async def check(request):
    body = await request.json()
    await asyncio.sleep(0.001)
    if body.get("version") == 2:  # a batch: a decision per event
        answers = [{"event_id": e["event_id"], "action": "allow"} for e in body["events"]]
        return web.json_response({"version": 2, "events": answers})
    return web.json_response({"action": "allow"})
async def ingest(request):
    await request.read()
    return web.json_response({})
app = web.Application(client_max_size=1 << 26)
app.router.add_post("/check", check)
app.router.add_post("/ingest", ingest)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def source(room: int, sources: int) -> str:
    return "a" if sources == 1 else f"a{room % sources}"


def config_text(
    state: Path,
    rooms: int,
    sources: int,
    archive: bool = True,
    extra: str = "",
    *,
    database: str | None = None,
) -> str:
    gateways = "\n".join(
        f"  g{i}:\n    rooms:\n      - {{network: {source(i, sources)}, room: '#a{i}'}}\n"
        f"      - {{network: b, room: '#b{i}'}}"
        for i in range(rooms)
    )
    nets = "\n".join(f"  {source(i, sources)}: {{type: memory}}" for i in range(sources))
    where = f", database: '{database}'" if database else ""
    return f"""
bridge: {{state_dir: '{state}', log: {{level: error}}{where}}}
archive: {{enabled: {str(archive).lower()}{extra and ", " + extra}}}
networks:
{nets}
  b: {{type: memory, nick: relay-b, backlog: {{max_items: 1000000, max_bytes: 1073741824}}}}
gateways:
{gateways}
"""


async def start(
    state: Path,
    rooms: int,
    sources: int = 1,
    archive: bool = True,
    extra: str = "",
    *,
    database: str | None = None,
) -> tuple[Daemon, MemoryHub]:
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    # `extra` is "POLICY-YAML;ARCHIVE-KEYS": a hook sits in `policy`, sinks in `archive`.
    policy, _, keys = extra.rpartition(";")
    config = parse_config(
        config_text(state, rooms, sources, archive, keys, database=database) + policy
    )
    daemon = Daemon(config, factory=build)
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


async def relay_rate(
    state: Path,
    events: int,
    rooms: int,
    sources: int = 1,
    archive: bool = True,
    *,
    extra: str = "",
    database: str | None = None,
    cpu: list[float] | None = None,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> float:
    """Events/s; `cpu` gets the CPU seconds per event appended, by `cpu_clock`: the
    event loop's own thread by default (what the relay paid, whatever else the shared
    machine ran), or `time.process_time` for both of this process's threads (with
    PostgreSQL, the database thread works too; a database server's CPU is not counted)."""
    daemon, hub = await start(state, rooms, sources, archive, extra, database=database)
    try:
        b = daemon.adapters["b"]
        assert isinstance(b, MemoryAdapter)
        t0, c0 = time.perf_counter(), cpu_clock()
        for i in range(events):
            hub.post(f"#a{i % rooms}", "alice", f"message {i}")
        while len(b.sent) < events:
            await asyncio.sleep(0.01)
            relay = daemon.relay
            assert relay is not None
            failed = {n: s for n, s in relay.stats.items() if s.denied or s.errors}
            if failed:  # every source network: with 10 of them, none is called "a"
                raise SystemExit(f"events were denied or failed: {failed}")
        rate = events / (time.perf_counter() - t0)
        if cpu is not None:
            cpu.append((cpu_clock() - c0) / events)
        for r in range(rooms):  # in order per destination
            texts = [p.text for p in hub.in_room(f"#b{r}")]
            net = source(r, sources)
            assert texts == [f"<alice@{net}> message {i}" for i in range(r, events, rooms)]
        return rate
    finally:
        await daemon.stop(drain=0)


async def engine_rates(url: str, events: int, rooms: int, empty: Callable[[str], None]) -> None:
    """The relay's persisted rates on SQLite (state on disk) and on PostgreSQL, each
    round in turn on both engines so that a busy moment on the host hits both alike,
    best of two. `empty` empties the database before each round on it."""
    runs = [
        ("1 network, 1 room, archive", events // 4, 1, 1, True),
        ("1 network, 1 room, no archive", events // 4, 1, 1, False),
        (f"10 networks, {rooms} rooms, archive", events, rooms, 10, True),
    ]
    print(
        f"{'relay, state database':<40}{'SQLite':>9}{'PostgreSQL':>12}{'ratio':>7}"
        f"{'CPU us/event: SQLite':>22}{'PostgreSQL':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i, (what, n, rooms_, sources, archive) in enumerate(runs):
            best: dict[str | None, float] = {}
            cpu: dict[str | None, list[float]] = {None: [], url: []}
            for attempt in range(2):
                for database in (None, url):
                    if database is not None:
                        empty(database)
                    state = Path(tmp) / f"{i}-{attempt}-{'pg' if database else 'sqlite'}"
                    rate = await relay_rate(
                        state, n, rooms_, sources, archive, database=database,
                        cpu=cpu[database], cpu_clock=time.process_time,
                    )  # fmt: skip
                    best[database] = max(rate, best.get(database, 0.0))
            lite, pg = best[None], best[url]
            print(
                f"{what + ':':<40}{lite:>9,.0f}{pg:>12,.0f}{pg / lite:>7.2f}"
                f"{min(cpu[None]) * 1e6:>22,.0f}{min(cpu[url]) * 1e6:>12,.0f}"
            )
    print("(events/s, best of two; CPU: this process's, both threads, the server's not counted)")


def in_process_rate(events: int) -> float:
    """Router, policy, render and outbox item building for each event: the relay path's
    work without the state database."""
    config = parse_config(config_text(Path("/nonexistent"), 1, 1))
    setup = setup_for(config)
    caps = Capabilities(
        edits=True,
        deletes=True,
        replies=True,
        attachments=True,
        formatting="html",
        max_text_bytes=65536,
    )
    origin = Origin(network="a", room="#a0", sender=Sender(id="alice", name="alice"))
    batch = [Message(id=new_event_id(), origin=origin, text=f"message {i}") for i in range(events)]
    t0 = time.perf_counter()
    for event in batch:
        for route in setup.router.routes(origin.network, origin.room):
            decision = decide(event, route.dest, setup.policy)
            if decision.event is not None:
                shaped = render(decision.event, route, caps)
                if shaped is not None:
                    Item(
                        network=route.dest.network,
                        room=route.dest.room,
                        event=shaped,
                        txn_id=txn_id_for(event.id, route.dest.network, route.dest.room),
                    )
    return events / (time.perf_counter() - t0)


def policy_cost(body_bytes: int = 60_000, rules: int = 20, dests: int = 5) -> tuple[float, float]:
    """Seconds of policy per event for a big formatted body, and for a one-line one."""
    policy = compile_policy(
        Policy.model_validate(
            {
                "rules": [
                    {"name": f"r{i}", "action": "deny", "text": rf"(?i)\bsecret{i}\b"}
                    for i in range(rules)
                ]
            }
        )
    )
    para = '<p>Quarterly <b>numbers</b> and <a href="https://example.org/x">a link</a> here</p>'
    rich = RichText(para * (body_bytes // len(para)))
    plain = "Quarterly numbers and a link here\n" * (body_bytes // len(para))
    origin = Origin(network="a", room="#a0", sender=Sender(id="alice", name="Alice"))
    big = Message(id=new_event_id(), origin=origin, text=plain, rich=rich)
    small = Message(id=new_event_id(), origin=origin, text="hi", rich=RichText("<b>hi</b>"))
    targets = [Destination(f"n{i}", f"#r{i}") for i in range(dests)]

    def once(event: Message) -> float:
        t0 = time.perf_counter()
        texts = policy_texts(event)
        for dest in targets:
            decide(event, dest, policy, texts=texts)
        return time.perf_counter() - t0

    big_s = min(once(big) for _ in range(10))
    small_s = min(once(small) for _ in range(200))
    return big_s, small_s


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def hooks_and_sinks(events: int, rounds: int) -> None:
    """One room, archive on, state on disk: without hooks or sinks, then with an HTTP
    policy hook answering in 1 ms (in another process) and two sinks, `rounds` pairs.

    Each round measures both, next to each other in time and in alternating order, and
    the figure is the median of the rounds' ratios: on a shared machine the load drifts
    between runs, and a ratio of runs seconds apart is steadier than one of best runs."""
    port = free_port()
    service = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVICE, str(port))
    try:
        for _ in range(100):  # the service is up once it takes connections
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                await asyncio.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            hooked = (
                f"\npolicy:\n  hooks:\n    - {{name: dlp, url: 'http://127.0.0.1:{port}/check',"
                " timeout_ms: 2000, max_concurrency: 64}\n;"
                f"sinks: [{{name: hec, type: http, url: 'http://127.0.0.1:{port}/ingest'}},"
                f" {{name: file, type: file, path: '{tmp}/records.jsonl'}}]"
            )
            rates: dict[str, list[float]] = {"none": [], "hook": []}
            cpu: dict[str, list[float]] = {"none": [], "hook": []}
            for i in range(rounds):
                order = ("none", "hook") if i % 2 == 0 else ("hook", "none")
                for kind in order:
                    rates[kind].append(
                        await relay_rate(
                            Path(tmp) / f"{kind}{i}",
                            events,
                            1,
                            extra=hooked if kind == "hook" else "",
                            cpu=cpu[kind],
                        )
                    )
    finally:
        service.terminate()
        await service.wait()
    ratios = sorted(h / n for h, n in zip(rates["hook"], rates["none"], strict=True))
    none, hook = statistics.median(rates["none"]), statistics.median(rates["hook"])
    loop_none, loop_hook = statistics.median(cpu["none"]), statistics.median(cpu["hook"])
    print(
        "relay, 1 room, archive, no hooks or sinks:".ljust(56)
        + f"{none:>9,.0f} events/s  (loop {loop_none * 1e6:.0f} us/event)"
    )
    print(
        "relay, 1 room, archive, 1 ms HTTP hook + 2 sinks:".ljust(56)
        + f"{hook:>9,.0f} events/s  (loop {loop_hook * 1e6:.0f} us/event)"
    )
    print(
        f"  hooked / hook-free, median of {rounds} rounds:".ljust(56)
        + f"{statistics.median(ratios):>9.2f}x  (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x;"
        f" loop CPU ratio {loop_none / loop_hook:.2f}x; target 0.70x)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--hooks-only", action="store_true", help="only the hooks figure")
    parser.add_argument("--rounds", type=int, default=5, help="hooks figure: rounds of both")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database", metavar="URL", help="PostgreSQL against SQLite, on this empty database"
    )
    where.add_argument(
        "--postgres", action="store_true", help="the same, on a loopback server of its own"
    )
    args = parser.parse_args()
    logs.setup("error", "console")
    if args.hooks_only:
        await hooks_and_sinks(args.events // 4, args.rounds)
        return
    if args.database or args.postgres:
        # Run as a script, sys.path has bench/ but not the project root, home of tests/.
        sys.path.insert(0, str(ROOT))
        from tests.servers.postgres import empty_tables, postgres_database  # noqa: PLC0415

        if args.database:
            await engine_rates(args.database, args.events, args.rooms, empty_tables)
        else:
            with postgres_database() as url:
                await engine_rates(url, args.events, args.rooms, empty_tables)
        return
    base = baseline(args.events)
    print(f"baseline (hub only, no bridge):      {base:>10,.0f} events/s")
    pure = in_process_rate(args.events * 5)
    print(
        f"in process: route, policy, render:   {pure:>10,.0f} events/s"
        f"  ({pure / base:.3f} of baseline)"
    )
    for label, root in (("disk", None), ("tmpfs", "/dev/shm")):
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            runs = [
                ("1 network, 1 room, archive", args.events // 4, 1, 1, True),
                ("1 network, 1 room, no archive", args.events // 4, 1, 1, False),
                (f"10 networks, {args.rooms} rooms, archive", args.events, args.rooms, 10, True),
            ]
            for i, (what, events, rooms, sources, archive) in enumerate(runs):
                rate = await relay_rate(Path(tmp) / str(i), events, rooms, sources, archive)
                print(
                    f"relay, {what}, state on {label}:".ljust(56)
                    + f"{rate:>9,.0f} events/s  ({rate / base:.4f} of baseline)"
                )
    big_s, small_s = policy_cost()
    print(
        f"policy per event, 60 KB formatted, 20 rules, 5 destinations: {big_s * 1000:8.2f} ms"
        f"  ({big_s / small_s:,.0f}x a one-line message: {small_s * 1e6:.0f} us)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        per_event, depth = await queued_memory(Path(tmp), 10000)
    print(
        f"memory per 10 000 queued events:     {per_event * 10000 / 2**20:>10.1f} MiB"
        f"  ({per_event:,.0f} B/event, {depth} queued)"
    )
    await hooks_and_sinks(args.events // 4, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
