"""XMPP relay latency and throughput between two MUC rooms on a loopback Prosody.

    .venv/bin/python bench/xmpp.py [--latency 60] [--burst 2000]

Baseline, measured in the same run: the direct client path (Carol posts into room B,
Bob reads it there; Carol then leaves). Then Alice, who is only in room A, posts there
and Bob reads the relayed copy in B,
relayed three ways: by the XMPP adapter alone (no core), by the whole daemon in this
process, and by `imbridge run` in its own process. Prints p50/p99 latency at 5 msg/s for
each and the added latency; then in-order throughput for a burst of `--burst` messages
on relaxed limits, checking that none was lost, duplicated or reordered. The bridged path
crosses Prosody twice (A, then B) where the direct path crosses it once, and each relayed
message waits for its MUC reflection before the next is sent (that makes it lossless).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arrivals import MucClock, pct, phase, relay_paths
from imbridge import logs
from imbridge.adapter import Outgoing
from imbridge.adapters.xmpp import XmppAdapter
from imbridge.config.schema import Config
from imbridge.events import Event, Message, RemoteId
from imbridge.testing import DictCursors
from tests.servers.prosody import Prosody, XmppUser


@asynccontextmanager
async def adapter_only(config: Config, dest: str) -> AsyncIterator[None]:
    """The XMPP adapter relaying A -> B by itself: its sink sends at once, with no state
    database, policy or outbox in between (what the adapter itself adds)."""
    net = config.networks["xm"]
    adapter = XmppAdapter("xm", net, DictCursors())
    queue: asyncio.Queue[Message] = asyncio.Queue()

    async def sink(event: Event) -> None:
        if isinstance(event, Message) and event.origin.room != dest:
            text = f"<{event.origin.sender.name}@xm> {event.text}"
            queue.put_nowait(dataclasses.replace(event, text=text))

    async def worker() -> None:
        """In order, with up to the adapter's send window in flight, as the outbox sends."""
        window = asyncio.Semaphore(adapter.capabilities.send_window)
        inflight: set[asyncio.Future[RemoteId]] = set()

        def settled(task: asyncio.Future[RemoteId]) -> None:
            inflight.discard(task)
            window.release()

        try:
            while True:
                event = await queue.get()
                await window.acquire()
                task = asyncio.ensure_future(
                    adapter.send(Outgoing(room=dest, event=event, txn_id=event.id))
                )
                inflight.add(task)
                task.add_done_callback(settled)
                await asyncio.sleep(0)  # let it write before the next one starts
        finally:
            for pending in list(inflight):
                pending.cancel()

    await adapter.start(sink)
    task = asyncio.create_task(worker())
    try:
        for room in (r.room for r in config.gateways["g"].rooms):
            await adapter.join(room)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await adapter.aclose()


async def main(args: argparse.Namespace) -> None:
    logs.setup(level="warning", fmt="console")
    with tempfile.TemporaryDirectory() as tmp:
        server = Prosody(state=Path(tmp) / "prosody")
        server.write_config()
        server.start()
        try:
            await run(args, server, Path(tmp))
        finally:
            server.stop()


async def run(args: argparse.Namespace, server: Prosody, tmp: Path) -> None:
    jid, password = server.register()
    alice, bob, carol = [await XmppUser.login(server) for _ in range(3)]
    a, b = server.room("a"), server.room("b")
    await alice.join(a, "alice")
    await bob.join(b, "bob")
    await carol.join(b, "carol")
    clock = MucClock(bob, b)
    config_text = json.dumps({
        "bridge": {"state_dir": str(tmp / "state"), "log": {"level": "warning"}},
        "networks": {"xm": {
            "type": "xmpp", "jid": jid, "password": password, "host": server.host,
            "port": server.port, "tls": "plain", "nick": "relay",
            "rate_limit": {"per_second": 1_000_000, "burst": 1_000_000},
            # A burst is one sender flooding: past the default backlog the relay would
            # shed it (as it should); the bench measures how fast it relays instead.
            "backlog": {"max_items": 1_000_000, "max_bytes": 1 << 30},
        }},
        "gateways": {"g": {"rooms": [{"network": "xm", "room": a}, {"network": "xm", "room": b}]}},
        "archive": {"enabled": False},
    })  # fmt: skip
    to_a = functools.partial(alice.say, a)
    try:
        # Carol is in room B for the direct path only: her copies of relayed messages
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
    finally:
        await alice.close()
        await bob.close()
    for name, values in (("direct", direct), ("adapter", bare), ("bridged", bridged),
                         ("process", process)):  # fmt: skip
        print(f"latency {name:8} p50 {pct(values, 50):7.2f} ms  p99 {pct(values, 99):7.2f} ms"
              f"  ({len(values)}/{args.latency} at 5 msg/s)")  # fmt: skip
    print(f"added latency  p50 {pct(bridged, 50) - pct(direct, 50):7.2f} ms  "
          f"p99 {pct(bridged, 99) - pct(direct, 99):7.2f} ms")  # fmt: skip
    print(f"added by the adapter alone p50 {pct(bare, 50) - pct(direct, 50):7.2f} ms")
    print(f"throughput direct  {direct_rate:8.0f} msg/s  in order, complete: {direct_ok}")
    print(f"throughput adapter {bare_rate:8.0f} msg/s  in order, complete: {bare_ok}")
    print(f"throughput bridged {bridged_rate:8.0f} msg/s  in order, complete: {bridged_ok}")
    print(f"throughput process {process_rate:8.0f} msg/s  in order, complete: {process_ok}")
    print(f"added latency, bridge in its own process: p50 "
          f"{pct(process, 50) - pct(direct, 50):7.2f} ms  p99 "
          f"{pct(process, 99) - pct(direct, 99):7.2f} ms")  # fmt: skip
    print(f"the bridge's own share (bridged minus two direct hops): p50 "
          f"{pct(bridged, 50) - 2 * pct(direct, 50):6.2f} ms in-process, "
          f"{pct(process, 50) - 2 * pct(direct, 50):6.2f} ms own process")  # fmt: skip
    print(f"ratio bridged/direct throughput {bridged_rate / direct_rate:.2f}, "
          f"p50 latency {statistics.median(bridged) / statistics.median(direct):.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=60, help="messages per latency run")
    parser.add_argument("--burst", type=int, default=2000, help="messages per throughput run")
    asyncio.run(main(parser.parse_args()))
