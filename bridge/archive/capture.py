"""Keeps the bytes of every archived attachment: the daemon's capture worker.

The relay's commit only queues an attachment (one row, `filequeue`); this worker, owned
by the daemon, fetches it afterwards, so a slow or hostile file server never holds a
relay commit. Each attachment ends as one chained `file` record, whatever happened:

    stored     the bytes are in the file store; the record carries their SHA-256 and size
    too_large  over `archive.attachments.max_bytes` (announced or counted): not kept
    failed     with the reason: refused address, gone at the source, or still unreachable
               after `MAX_ATTEMPTS` tries with backoff (never retried forever)

Where the media need the origin network's credentials (Matrix authenticated media),
the origin adapter opens it (`AttachmentSource`); anything else is a plain download
held to public addresses (`imbridge.safefetch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import structlog

from imbridge.adapter import AttachmentSource, Media, MediaGone, MediaUnavailable
from imbridge.archive import filequeue
from imbridge.archive.filequeue import Job
from imbridge.archive.files import FileStore, FileWriter, StoredFile
from imbridge.archive.store import ArchiveStore, now_us
from imbridge.config.schema import ArchiveAttachments
from imbridge.db import Conn, Database
from imbridge.events import Attachment
from imbridge.safefetch import normalise_origins, open_url
from imbridge.tasks import TaskTree

log = structlog.get_logger("imbridge.archive")

MAX_ATTEMPTS = 6
RETRY_FIRST_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
POLL_SECONDS = 0.5
SWEEP_CHECK_SECONDS = 60.0
BATCH = 4  # attachments fetched at once


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # stored | too_large | failed | retry
    reason: str | None = None
    stored: StoredFile | None = None
    mimetype: str | None = None


class _TooLarge(Exception):
    pass


class AttachmentCapture:
    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        files: FileStore,
        adapters: Mapping[str, object],
        *,
        poll: float = POLL_SECONDS,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.db = db
        self.store = store
        self.files = files
        self.adapters = adapters
        self.poll = poll
        self.clock = clock
        self._tasks: TaskTree | None = None
        self._swept_at: int | None = None

    @property
    def settings(self) -> ArchiveAttachments:
        """Read at every fetch, so settings the daemon swaps in apply at once."""
        return self.store.settings.attachments

    async def __aenter__(self) -> AttachmentCapture:
        self._tasks = await TaskTree("archive-files").__aenter__()
        self._tasks.spawn(self._run(), name="archive-files")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tasks is not None:
            await self._tasks.aclose()
            self._tasks = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            try:
                done = await self.run_once()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + SWEEP_CHECK_SECONDS
                    await self.sweep_after_purge()
            except Exception:  # a failed round is logged; the next one retries
                log.exception("attachment_capture_failed")
                done = 0
            if not done:
                await asyncio.sleep(self.poll)

    async def sweep_after_purge(self) -> int:
        """Deletes the files no record refers to any more, once per purge record (the
        daemon's daily purge, or `imbridge archive purge`)."""
        last = await self.db.read(_last_purge)
        if last == self._swept_at:
            return 0
        gone = await sweep(self.db, self.files)
        self._swept_at = last
        if gone:
            log.info("attachment_files_swept", deleted=gone)
        return gone

    async def run_once(self) -> int:
        """Handles the attachments due now (up to `BATCH`); returns how many."""
        jobs = await self.db.read(lambda conn: filequeue.due(conn, self.clock(), BATCH))
        async with asyncio.TaskGroup() as tg:
            for job in jobs:
                tg.create_task(self._one(job))
        return len(jobs)

    async def _one(self, job: Job) -> None:
        try:
            await self._capture(job)
        except Exception as exc:
            log.exception("attachment_capture_failed", event_seq=job.event_seq, index=job.idx)
            await self._give_up(job, f"internal error: {type(exc).__name__}")

    async def _capture(self, job: Job) -> None:
        found = await self.db.read(lambda conn: self._load(conn, job))
        if found is None:  # its event was purged, or names fewer attachments
            await self.db.transact(lambda conn: filequeue.finish(conn, job))
            return
        meta, att = found
        outcome = await self.fetch(meta["network"], att)
        if outcome.status == "retry":
            if job.attempts + 1 < MAX_ATTEMPTS:
                await self._postpone(job, outcome.reason)
                return
            outcome = Outcome("failed", f"{outcome.reason} (after {MAX_ATTEMPTS} attempts)")
        await self._record(job, meta, att, outcome)

    async def _give_up(self, job: Job, reason: str) -> None:
        """Records the attachment as failed, so a fault in the worker is never retried
        forever (and never leaves the attachment unaccounted for)."""
        found = await self.db.read(lambda conn: self._load(conn, job))
        if found is None:
            await self.db.transact(lambda conn: filequeue.finish(conn, job))
            return
        meta, att = found
        await self._record(job, meta, att, Outcome("failed", reason))

    async def _postpone(self, job: Job, reason: str | None) -> None:
        delay = min(RETRY_CAP_SECONDS, RETRY_FIRST_SECONDS * 2**job.attempts)
        not_before = self.clock() + int(delay * 1_000_000)
        log.warning(
            "attachment_fetch_retry",
            event_seq=job.event_seq,
            index=job.idx,
            attempt=job.attempts + 1,
            reason=reason,
            retry_in=delay,
        )
        await self.db.transact(lambda conn: filequeue.postpone(conn, job, not_before))

    def _load(self, conn: Conn, job: Job) -> tuple[dict[str, Any], Attachment] | None:
        rows = list(self.store.rows(conn, "WHERE seq = ? AND kind = 'event'", (job.event_seq,)))
        if not rows:
            return None
        record = rows[0].record
        atts = self.store.body(record).get("attachments") or []
        if job.idx >= len(atts) or not isinstance(atts[job.idx], dict):
            return None
        a = atts[job.idx]
        size = a.get("size")
        att = Attachment(
            url=str(a.get("url") or "-"),
            name=str(a.get("name") or ""),
            mimetype=str(a.get("mimetype") or "application/octet-stream"),
            size=size if isinstance(size, int) and size >= 0 else None,
        )
        meta = {
            "event_id": record.event_id,
            "network": record.network,
            "room": record.room,
            "sender": record.sender,
        }
        return meta, att

    def _opener(self, network: str | None, att: Attachment) -> AbstractAsyncContextManager[Media]:
        adapter = self.adapters.get(network or "")
        if isinstance(adapter, AttachmentSource):
            opened = adapter.open_attachment(att)
            if opened is not None:
                return opened
        s = self.settings
        return open_url(
            att.url, allow_origins=normalise_origins(s.allow_origins), timeout=s.timeout_seconds
        )

    async def fetch(self, network: str | None, att: Attachment) -> Outcome:
        """Fetches and stores one attachment; never raises for what the network did."""
        s = self.settings
        cap = s.max_bytes
        if att.size is not None and att.size > cap:
            return Outcome("too_large", f"announced {att.size} bytes, over {cap}")
        writer: FileWriter = await asyncio.to_thread(self.files.writer)
        try:
            async with asyncio.timeout(s.timeout_seconds), self._opener(network, att) as media:
                if media.size is not None and media.size > cap:
                    raise _TooLarge(f"announced {media.size} bytes, over {cap}")
                async for chunk in media.chunks:
                    if writer.size + len(chunk) > cap:
                        raise _TooLarge(f"over {cap} bytes")
                    await asyncio.to_thread(writer.write, chunk)
                stored = await asyncio.to_thread(writer.commit)
                return Outcome("stored", stored=stored, mimetype=media.mimetype)
        except _TooLarge as exc:
            return Outcome("too_large", str(exc))
        except MediaGone as exc:  # refused, or gone at the source: final
            return Outcome("failed", str(exc) or type(exc).__name__)
        except (MediaUnavailable, TimeoutError, OSError) as exc:
            return Outcome("retry", str(exc) or type(exc).__name__)
        finally:
            await asyncio.to_thread(writer.abort)

    async def _record(
        self, job: Job, meta: dict[str, Any], att: Attachment, outcome: Outcome
    ) -> None:
        stored = outcome.stored
        status = outcome.status if outcome.status != "failed" else f"failed: {outcome.reason}"
        body: dict[str, Any] = {
            "index": job.idx,
            "url": att.url,
            "name": att.name,
            "mimetype": att.mimetype,
            "served_mimetype": outcome.mimetype,
            "status": status,
            "sha256": stored.sha256 if stored else None,
            "size": stored.size if stored else att.size,
        }
        if outcome.status == "too_large":
            body["reason"] = outcome.reason

        def commit(conn: Conn) -> None:
            head = self.store.append(
                conn,
                [{**meta, "kind": "file", "action": outcome.status, "body": body}],
            )
            if stored is not None:
                filequeue.add_ref(conn, head.seq, stored.file_id)
            filequeue.finish(conn, job)

        await self.db.transact(commit)
        fields = {"event_id": meta["event_id"], "index": job.idx}
        if stored is not None:
            log.info("attachment_stored", size=stored.size, **fields)
        else:
            log.warning(
                "attachment_not_stored", status=outcome.status, reason=outcome.reason, **fields
            )


def _last_purge(conn: Conn) -> int | None:
    row = conn.execute("SELECT max(seq) FROM archive_records WHERE kind = 'purge'").fetchone()
    return None if row[0] is None else int(row[0])


async def sweep(db: Database, files: FileStore) -> int:
    """Removes stored files that no `file` record refers to (after a purge committed)."""
    referenced = await db.read(filequeue.referenced, background=True)
    return await asyncio.to_thread(files.sweep, referenced)
