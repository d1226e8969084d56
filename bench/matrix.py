"""Matrix relay cost: latency added and throughput, bridged versus direct, in one run.

Starts its own Synapse (relaxed limits) and the daemon with two rooms in one gateway.
Alice posts in room A; Bob is in both rooms, so each message is timed twice on the same
client: its arrival in A is the direct client path (the baseline), its relayed copy in B
is the bridged path. Latency is measured at a steady 5 msg/s, throughput on a burst.

With `--appservice`, it measures instead in-order throughput from IRC into Matrix in
appservice mode against client mode, same run, on stock rate limits
(`bench/matrix_appservice.py`).

usage: .venv/bin/python bench/matrix.py [--messages 100] [--burst 300]
       .venv/bin/python bench/matrix.py --appservice [--messages 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imbridge import logs
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.synapse import RELAXED_LIMITS, SynapseServer


class Clock:
    """Bob's view: when each body arrived in each room (monotonic seconds)."""

    def __init__(self, client: nio.AsyncClient) -> None:
        self.client = client
        self.seen: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            resp = await self.client.sync(timeout=5000)
            now = time.monotonic()
            if isinstance(resp, nio.SyncResponse):
                for room_id, info in resp.rooms.join.items():
                    for ev in info.timeline.events:
                        body = ev.source.get("content", {}).get("body")
                        if isinstance(body, str):
                            self.seen.setdefault((room_id, body.rsplit(" ", 1)[-1]), now)


async def wait_all(clock: Clock, keys: list[tuple[str, str]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(k in clock.seen for k in keys):
        if time.monotonic() > deadline:
            missing = [k for k in keys if k not in clock.seen]
            raise SystemExit(f"timed out; {len(missing)} messages missing")
        await asyncio.sleep(0.01)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(messages: int, burst: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imbridge-bench-matrix-") as tmp:
        server = SynapseServer(Path(tmp) / "synapse", dict(RELAXED_LIMITS))
        server.start()
        try:
            await run(server, Path(tmp), messages, burst)
        finally:
            server.stop()


async def run(server: SynapseServer, tmp: Path, messages: int, burst: int) -> None:
    relay, alice_u, bob_u = server.register(), server.register(), server.register()
    alice = nio.AsyncClient(server.url, alice_u.user_id, device_id=alice_u.device_id)
    bob = nio.AsyncClient(server.url, bob_u.user_id, device_id=bob_u.device_id)
    for c, u in ((alice, alice_u), (bob, bob_u)):
        c.access_token, c.user_id = u.access_token, u.user_id
    a = (await alice.room_create(invite=[relay.user_id, bob_u.user_id])).room_id
    b = (await alice.room_create(invite=[relay.user_id, bob_u.user_id])).room_id
    for room in (a, b):
        await bob.join(room)
    await bob.sync(timeout=0, full_state=True)
    clock = Clock(bob)
    config = parse_config(
        json.dumps(
            {
                "bridge": {"state_dir": str(tmp / "state"), "log": {"level": "error"}},
                "networks": {
                    "mx": {
                        "type": "matrix",
                        "homeserver": server.url,
                        "user_id": relay.user_id,
                        "access_token": relay.access_token,
                        "rate_limit": {"per_second": 10_000, "burst": 10_000},
                    }
                },
                "gateways": {
                    "g": {"rooms": [{"network": "mx", "room": a}, {"network": "mx", "room": b}]}
                },
                "archive": {"enabled": False},
            }
        )
    )
    sync = asyncio.create_task(clock.run())
    try:
        async with Daemon(config) as daemon:
            assert await daemon.ready(60)
            await asyncio.sleep(1)
            # Latency at a steady 5 msg/s.
            sent: dict[str, float] = {}
            start = time.monotonic()
            for i in range(messages):
                await asyncio.sleep(max(0.0, start + i / 5 - time.monotonic()))
                key = f"lat{i}"
                sent[key] = time.monotonic()
                await alice.room_send(a, "m.room.message", {"msgtype": "m.text", "body": key})
            await wait_all(clock, [(r, k) for k in sent for r in (a, b)])
            direct = [(clock.seen[(a, k)] - t) * 1000 for k, t in sent.items()]
            bridged = [(clock.seen[(b, k)] - t) * 1000 for k, t in sent.items()]
            added = [x - y for x, y in zip(bridged, direct, strict=True)]
            # Throughput on a burst: Alice posts back to back.
            t0 = time.monotonic()
            keys = [f"tp{i}" for i in range(burst)]
            for key in keys:
                await alice.room_send(a, "m.room.message", {"msgtype": "m.text", "body": key})
            await wait_all(clock, [(r, k) for k in keys for r in (a, b)])
            direct_s = max(clock.seen[(a, k)] for k in keys) - t0
            bridged_s = max(clock.seen[(b, k)] for k in keys) - t0
    finally:
        sync.cancel()
        await asyncio.gather(sync, return_exceptions=True)
        await alice.close()
        await bob.close()

    print(f"matrix relay, {messages} msgs at 5 msg/s, burst of {burst} (Synapse on loopback)")
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, xs in (
        ("direct (baseline)", direct),
        ("bridged A->B", bridged),
        ("added by bridge", added),
    ):
        print(f"{name:24}{pct(xs, 50):10.1f}{pct(xs, 99):10.1f}{statistics.fmean(xs):10.1f}")
    print(
        f"latency ratio bridged/direct: p50 {pct(bridged, 50) / pct(direct, 50):.2f}x, "
        f"p99 {pct(bridged, 99) / pct(direct, 99):.2f}x"
    )
    print(f"throughput direct  : {burst / direct_s:8.1f} msg/s ({direct_s:.2f} s)")
    print(f"throughput bridged : {burst / bridged_s:8.1f} msg/s ({bridged_s:.2f} s)")
    print(f"throughput ratio bridged/direct: {direct_s / bridged_s:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--appservice", action="store_true", help="appservice mode against client mode")
    args = ap.parse_args()
    logs.setup("error", "console")
    if args.appservice:
        # Its own process: it needs the IRC test server's client, which this folder's
        # irc.py would shadow on this script's path.
        script = Path(__file__).with_name("matrix_appservice.py")
        sys.exit(subprocess.call([sys.executable, script, "--messages", str(args.messages or 30)]))
    else:
        asyncio.run(bench(args.messages or 100, args.burst))


if __name__ == "__main__":
    main()
