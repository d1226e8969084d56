"""The archive's running part inside the daemon: chain heads written at start, every
`checkpoint_seconds` and at stop; the retention purge once a day; room notices; the
`config` and `hold` records of each applied config.

It owns one task in its `TaskTree`, started on entry and cancelled (and awaited) on exit,
so the daemon only has to enter it in its exit stack.

Settings live in `store.settings` and are read where they are used (the purge reads the
holds when it runs, the loop reads the checkpoint interval each round), so `apply` makes a
reload take effect by swapping that one value, inside a transaction: a purge already
running finishes first, any later one sees the new holds. What cannot change under a
running daemon (`RESTART_KEYS`: the key that encrypts what is written, where the heads
go, whether anything is archived) keeps its old value until a restart, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from imbridge.archive.actor import Actor
from imbridge.archive.chain import Head
from imbridge.archive.configs import Applied, changed_between, record_config
from imbridge.archive.retention import PurgeResult, purge, truncate_wal
from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import Config
from imbridge.db import Conn, Database
from imbridge.tasks import TaskTree

log = structlog.get_logger("imbridge.archive")

PURGE_EVERY = 86_400.0
INDEX_EVERY = 1.0
RESTART_KEYS = ("enabled", "encryption_key", "head_file", "signing_key")
"""Archive keys a reload records but applies only at the next start."""


class ArchiveService:
    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        *,
        purge_every: float = PURGE_EVERY,
        monotonic: Callable[[], float] = time.monotonic,
        actor: Actor | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.actor = actor or Actor.of_process(via="daemon")
        self.purge_every = purge_every
        self._monotonic = monotonic
        self._tasks: TaskTree | None = None

    async def __aenter__(self) -> ArchiveService:
        await self.checkpoint()
        self._tasks = await TaskTree("archive").__aenter__()
        self._tasks.spawn(self._run(), name="archive")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tasks is not None:
            await self._tasks.aclose()
            self._tasks = None
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
        next_purge = self._monotonic()  # purge once at start: a daemon may run for days
        last_checkpoint = -float("inf")
        while True:
            try:
                await self.index()
                if self._monotonic() >= next_purge:
                    next_purge = self._monotonic() + self.purge_every
                    await self.purge()
                # The interval is read each round: a reload that shortens it applies now.
                interval = self.store.settings.checkpoint_seconds
                if self._monotonic() - last_checkpoint >= interval:
                    last_checkpoint = self._monotonic()
                    await self.checkpoint()
            except Exception:  # a failed round is logged; the next one retries
                log.exception("archive_job_failed")
            await asyncio.sleep(INDEX_EVERY)

    async def record_start(self, config: Config) -> Applied:
        """The config the daemon starts with, diffed against the last one recorded."""
        applied = await self.db.transact(
            lambda conn: record_config(conn, self.store, config, self.actor, event="start"),
            background=True,
        )
        self._log_applied(applied)
        return applied

    async def apply(self, old: Config, new: Config) -> Applied:
        """Makes a reloaded config's archive settings current and records it; runs the
        purge at once when retention or holds changed, as a restart would."""
        in_force = self.store.settings
        pending = [
            f"archive.{key}"
            for key in RESTART_KEYS
            if getattr(in_force, key) != getattr(new.archive, key)
        ]
        settings = new.archive.model_copy(
            update={key: getattr(in_force, key) for key in RESTART_KEYS}
        )
        changed = changed_between(old, new)

        def swap(conn: Conn) -> Applied:
            applied = record_config(
                conn,
                self.store,
                new,
                self.actor,
                event="reload",
                changed=changed,
                restart_required=pending,
            )
            self.store.settings = settings  # once recorded: never in force unrecorded
            return applied

        applied = await self.db.transact(swap, background=True)
        self._log_applied(applied)
        if pending:
            log.warning(
                "archive_restart_required",
                keys=pending,
                hint="these archive settings apply at the next start; the old ones stay "
                "in force until then",
            )
        if {"archive.retention_days", "archive.legal_hold"} & set(changed):
            await self.purge()
        await self.checkpoint()
        return applied

    @staticmethod
    def _log_applied(applied: Applied) -> None:
        for h in applied.holds:
            log.info(f"legal_hold_{h.change}", hold=h.name, **h.globs)

    async def notice_due(self, network: str, room: str) -> str | None:
        """The notice to post in a room just joined, or None (none configured, or this
        room already got this text)."""
        return await self.db.read(lambda conn: self.store.notice_due(conn, network, room))

    async def notice_posted(self, network: str, room: str, text: str) -> None:
        def mark(conn: Conn) -> None:
            self.store.notice_posted(conn, network, room, text)

        await self.db.transact(mark)
