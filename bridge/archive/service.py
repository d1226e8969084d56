"""The archive's running part inside the daemon: chain heads written at start, every
`checkpoint_seconds` and at stop; the retention purge once a day; room notices.

It owns one task, started on entry and cancelled on exit, so the daemon only has to
`async with ArchiveService(db, store):` around its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable

import structlog

from imbridge.archive.chain import Head
from imbridge.archive.retention import PurgeResult, purge, truncate_wal
from imbridge.archive.store import ArchiveStore
from imbridge.db import Database

log = structlog.get_logger("imbridge.archive")

PURGE_EVERY = 86_400.0
INDEX_EVERY = 1.0


class ArchiveService:
    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        *,
        purge_every: float = PURGE_EVERY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.store = store
        self.purge_every = purge_every
        self._monotonic = monotonic
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ArchiveService:
        await self.checkpoint()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="archive")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.index()
        await self.checkpoint()

    async def checkpoint(self) -> Head:
        return await self.db.read(self.store.checkpoint, background=True)

    async def purge(self) -> PurgeResult:
        result = await self.db.transact(lambda conn: purge(self.store, conn), background=True)
        await self.db.read(truncate_wal, background=True)  # the purged pages leave the WAL
        if result.seq is not None:
            log.info(
                "archive_purged",
                deleted=result.deleted,
                held=result.held,
                cutoff=result.cutoff.isoformat(),
                record=result.seq,
            )
            await self.checkpoint()
        return result

    async def index(self) -> int:
        return await self.db.transact(self.store.index_pending, background=True)

    async def _run(self) -> None:
        interval = self.store.settings.checkpoint_seconds
        next_purge = self._monotonic()  # purge once at start: a daemon may run for days
        next_checkpoint = self._monotonic()
        while True:
            try:
                await self.index()
                if self._monotonic() >= next_purge:
                    next_purge = self._monotonic() + self.purge_every
                    await self.purge()
                if self._monotonic() >= next_checkpoint:
                    next_checkpoint = self._monotonic() + interval
                    await self.checkpoint()
            except Exception:  # a failed round is logged; the next one retries
                log.exception("archive_job_failed")
            await asyncio.sleep(INDEX_EVERY)

    async def notice_due(self, network: str, room: str) -> str | None:
        """The notice to post in a room just joined, or None (none configured, or this
        room already got this text)."""
        return await self.db.read(lambda conn: self.store.notice_due(conn, network, room))

    async def notice_posted(self, network: str, room: str, text: str) -> None:
        def mark(conn: sqlite3.Connection) -> None:
            self.store.notice_posted(conn, network, room, text)

        await self.db.transact(mark)
