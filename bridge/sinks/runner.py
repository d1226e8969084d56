"""Runs every configured sink: one task each, owned by `Sinks` (an async context manager
the daemon enters after the archive).

Each round ships the next batch after the sink's cursor and then stores the cursor, in
that order: a crash or an outage between the two sends that one batch again, never
skips one. A sink that fails retries with backoff from where it stood, so after an
outage it catches up in order; meanwhile the relay is untouched (reads on the sink's own
connection in a thread, one tiny cursor write per batch), and while the relay has a
backlog (`busy`) a sink ships at most one batch per `BUSY_FLOOR` seconds: its work would
compete with the relay's for the one interpreter, so a burst is relayed first and shipped
right after (the lag metric shows it), while a steady flow below the relay's capacity
leaves no backlog and is shipped as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import Sink
from imbridge.db import Database
from imbridge.sinks.feed import Batch, Cursor, Reader, load_cursor, save_cursor
from imbridge.sinks.transports import Transport, transport_for

log = structlog.get_logger("imbridge.sinks")

IDLE_POLL = 0.5
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 10.0
BUSY_FLOOR = 0.25
"""While the relay is busy, the least a sink still ships: one batch per this many seconds."""
STOP_GRACE = 5.0
"""At stop, how long a batch in flight may take to finish and store its cursor."""


@dataclass(slots=True)
class SinkState:
    """What /metrics and `imbridge status` show of one sink."""

    cursor: int = 0
    tail: int = 0
    oldest_us: int | None = None
    sent: int = 0
    batches: int = 0
    errors: int = 0
    up: bool = False
    last_error: str = ""

    @property
    def lag(self) -> int:
        return max(0, self.tail - self.cursor)

    def lag_seconds(self, now: float | None = None) -> float:
        if self.oldest_us is None or self.lag == 0:
            return 0.0
        return max(0.0, (now or time.time()) - self.oldest_us / 1e6)


class SinkRunner:
    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        config: Sink,
        location: Path | str,
        *,
        transport: Transport | None = None,
        busy: Callable[[], bool] | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.name = config.name
        self.state = SinkState()
        self._reader = reader or Reader(location, store)
        self._transport = transport or transport_for(config)
        self.stopping = asyncio.Event()
        self._busy = busy

    async def _yield_to_relay(self, since: float) -> None:
        """Waits while the relay has a backlog, up to `BUSY_FLOOR` after the last batch."""
        if self._busy is None:
            return
        loop = asyncio.get_running_loop()
        while self._busy() and loop.time() - since < BUSY_FLOOR and not self.stopping.is_set():
            await self._pause(0.05)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    async def run(self) -> None:
        name = self.name
        cursor = await self.db.read(lambda conn: load_cursor(conn, name))
        self.state.cursor = cursor.seq
        delay = BACKOFF_FIRST
        last = 0.0
        try:
            while not self.stopping.is_set():
                await self._yield_to_relay(last)
                last = asyncio.get_running_loop().time()
                batch = await asyncio.to_thread(self._reader.next_batch, cursor, self.config.batch)
                self._observe(batch, cursor)
                if not batch.records:
                    if batch.cursor != cursor:  # skipped head lines beyond the records
                        cursor = await self._save(batch.cursor)
                    await self._pause(IDLE_POLL)
                    continue
                try:
                    await self._transport.send(batch.records)
                except Exception as exc:  # noqa: BLE001 - retried from the same cursor
                    self._failed(exc, delay)
                    await self._pause(delay)
                    delay = min(BACKOFF_CAP, delay * 2)
                    continue
                if not self.state.up:
                    log.info("sink_up", sink=name, cursor=cursor.seq)
                self.state.up = True
                delay = BACKOFF_FIRST
                self.state.sent += len(batch.records)
                self.state.batches += 1
                cursor = await self._save(batch.cursor)
        finally:
            await self._transport.aclose()
            await asyncio.to_thread(self._reader.close)

    def _observe(self, batch: Batch, cursor: Cursor) -> None:
        self.state.tail = batch.tail
        self.state.cursor = cursor.seq
        self.state.oldest_us = batch.oldest_us

    def _failed(self, exc: Exception, delay: float) -> None:
        error = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
        self.state.errors += 1
        if self.state.up or not self.state.last_error:
            log.warning("sink_down", sink=self.name, error=error, retry_in=delay)
        self.state.up = False
        self.state.last_error = error[:300]

    async def _save(self, cursor: Cursor) -> Cursor:
        name = self.name
        await self.db.transact(lambda conn: save_cursor(conn, name, cursor))
        self.state.cursor = cursor.seq
        return cursor


class Sinks:
    """The sinks of `archive.sinks`, each in a task of its own, started on entry and
    cancelled on exit (a batch in flight is then sent again at the next start)."""

    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        configs: Sequence[Sink],
        location: Path | str,
        *,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.reader = Reader(location, store)  # shared: sinks at one cursor read once
        self.runners = [
            SinkRunner(db, store, c, location, busy=busy, reader=self.reader) for c in configs
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Sinks:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._guard(r), name=f"sink:{r.name}") for r in self.runners
        ]
        return self

    async def _guard(self, runner: SinkRunner) -> None:
        """A bug in one round must not end the sink for the daemon's life."""
        while not runner.stopping.is_set():
            try:
                await runner.run()
            except Exception:  # logged; the sink starts over from its stored cursor
                log.exception("sink_failed", sink=runner.name)
                await runner._pause(BACKOFF_CAP)

    async def __aexit__(self, *exc: object) -> None:
        """Lets each sink finish the batch in flight (its cursor stored), then cancels
        what is still waiting on a receiver that does not answer."""
        for runner in self.runners:
            runner.stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_GRACE)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def states(self) -> dict[str, SinkState]:
        return {r.name: r.state for r in self.runners}
