"""Floors for the IRC benchmark: what any durable relay written in Python pays here.

`floor_process` runs `floor_relay.py`, the least a Python relay can do, in its own
process beside `imbridge run`; its added latency is what this machine charges any Python
process for waking up and handling one line, however little it does; what imbridge adds
beyond it is imbridge's own.

`cold_commit` times the other part no durable relay can skip: the state database commit
that puts one relayed message and its delivery on disk before it is sent, as imbridge
makes it, once after each idle gap between messages and once back to back.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.arrivals import Arrivals
from imbridge import codec
from imbridge.archive.sealing import Sealer
from imbridge.db import Database
from imbridge.events import Message, Origin, Sender, new_event_id
from imbridge.outbox import Item, enqueue_sync, txn_id_for


async def cold_commit(rounds: int = 50, gap: float = 0.2) -> tuple[float, float]:
    """Median milliseconds of the relay's commit for one IRC message (its event row and
    one outbox item, on imbridge's own `Database`): after `gap` seconds idle, as at
    5 msg/s, and back to back."""

    def commit(conn: Any) -> None:
        event = Message(
            id=new_event_id(),
            origin=Origin(network="irc", room="#a", sender=Sender(id="alice", name="alice")),
            text="ping #c",
        )
        conn.execute(
            "INSERT INTO messages VALUES (?, ?, ?)", (event.id, codec.dumps(event), time.time())
        )
        item = Item("irc", "#b", event, txn_id_for(event.id, "irc", "#b"))
        enqueue_sync(conn, [item], sealer=Sealer())

    async def timed(pause: float) -> float:
        await asyncio.sleep(pause)
        start = time.perf_counter()
        await db.transact(commit)
        return (time.perf_counter() - start) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        async with Database(Path(tmp) / "state.db") as db:
            for _ in range(20):  # the first commits also grow the file
                await timed(0)
            idle = [await timed(gap) for _ in range(rounds)]
            busy = [await timed(0) for _ in range(rounds)]
    return statistics.median(idle), statistics.median(busy)


@asynccontextmanager
async def floor_process(
    host: str, port: int, source: str, dest: str, *, say: Callable[[str], object], seen: Arrivals
) -> AsyncIterator[None]:
    """The floor relay in its own process, ready once a probe said with `say` in `source`
    shows up in `seen`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("floor_relay.py")), host, str(port),
        "floor" + secrets.token_hex(2), source, dest,
    )  # fmt: skip
    try:
        deadline = time.perf_counter() + 30
        while "#floorprobe" not in seen.arrived and time.perf_counter() < deadline:
            say("probe #floorprobe")
            await asyncio.sleep(0.5)
        if "#floorprobe" not in seen.arrived:
            raise RuntimeError("the floor relay did not relay the probe within 30 s")
        yield
    finally:
        proc.terminate()
        await proc.wait()
