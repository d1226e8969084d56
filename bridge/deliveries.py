"""The outbox's records of finished sends, grouped into as few commits as sends allow.

A send's record (its row leaves the outbox, its remote id joins the id map, the archive
notes where it went) is queued, not awaited: the next send of a room need not wait for
this commit. Sends that finish while a record waits for the database join it, so one
commit records many. Commits keep their order, so a crash can only lose the records of
the last sends, which are then resent once, as for a crash between a send and its record.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from imbridge.archive import Delivery, Recorder
from imbridge.db import Conn, Database
from imbridge.events import RemoteId
from imbridge.idmap import record_many_sync

if TYPE_CHECKING:  # the outbox imports this module
    from imbridge.outbox import Item

log = structlog.get_logger("imbridge.outbox")


class DeliveryRecords:
    """Queued records of delivered items; `on_settled` runs whenever a commit of them
    settles, so the outbox can tell when it is idle."""

    def __init__(self, db: Database, recorder: Recorder, on_settled: Callable[[], None]) -> None:
        self.db = db
        self.recorder = recorder
        self._on_settled = on_settled
        self._jobs: set[asyncio.Future[Any]] = set()
        self._done: list[tuple[Item, str]] = []
        self._job: asyncio.Future[Any] | None = None
        self._lock = threading.Lock()  # a background commit may take the list

    def __len__(self) -> int:
        """Record commits submitted and not yet settled."""
        return len(self._jobs)

    def add(self, item: Item, remote_id: str) -> None:
        """Queues the record that `item` was delivered as `remote_id` ("" without one)."""
        with self._lock:
            self._done.append((item, remote_id))
            if self._job is None:
                self._job = self.db.submit(self._record_sync)
                self._jobs.add(self._job)
                self._job.add_done_callback(self._settled)

    def _record_sync(self, conn: Conn) -> None:
        with self._lock:  # from here on, new deliveries go to the next record
            done, self._done = self._done, []
            self._job = None
        conn.executemany(
            "DELETE FROM outbox WHERE seq = ? AND txn_id = ?",
            [(item.seq, item.txn_id) for item, _ in done],
        )
        record_many_sync(
            conn,
            [
                (item.network, item.room, remote_id, item.event.id, False)
                for item, remote_id in done
                if remote_id
            ],
        )
        self.recorder.record_deliveries(
            conn,
            [
                Delivery(item.event.id, item.dest, RemoteId(remote_id) if remote_id else None)
                for item, remote_id in done
            ],
        )

    def _settled(self, fut: asyncio.Future[Any]) -> None:
        self._jobs.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            # The row stays in the outbox table: the item is resent after a restart.
            log.error("delivery_not_recorded", error=str(fut.exception()))
        self._on_settled()


__all__ = ["DeliveryRecords"]
