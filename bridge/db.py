"""The state database: one SQLite file in `bridge.state_dir`.

Why not one aiosqlite call per statement: the relay path must commit an event, its
decisions and its queued deliveries atomically, and at thousands of events per second.
So callers hand a whole transaction function to `transact`; functions that arrive while
others wait are grouped into one commit (group commit), each under its own savepoint so
one failing function does not undo the others.

Why the small transactions run on the event loop rather than in a database thread: a
relay commit is a few indexed rows, about 0.1 ms of SQLite work, while handing it to a
thread and back costs as much again in wake-ups on each side, and the GIL lets only one
of the two threads run Python anyway. WAL checkpoints, the one part of a commit that
writes the database file and syncs it, run in the thread on a connection of their own,
so a commit on the loop only appends to the WAL. Work that may take long (archive
indexing, purges, exports, verification) asks for `background=True` and runs in the
thread; the one connection is still used by one caller at a time, because the queue
waits for it.

Writes commit in the order they were submitted, and a caller that must first await
something (the relay looking up a quoted message) keeps its place with `reserve`. A read
issued while writes are queued runs after them, so it sees everything submitted before
it: an adapter looking up an event it has just handed to the relay finds it.

Schema migrations are numbered per component ("core", "archive", ...) in the
`schema_version` table, so the archive can evolve its tables independently.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from imbridge import statefiles
from imbridge.errors import StateError

T = TypeVar("T")
TxnFn = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 128
"""Jobs per commit: a batch runs on the event loop, so it must stay short."""
CHECKPOINT_EVERY = 256
"""Write jobs between background WAL checkpoints."""
WAL_BACKSTOP_PAGES = 4096
"""SQLite's own checkpoint, on the loop, only if the background ones fall this far behind."""

_WRITE, _READ = 0, 1

CORE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE idmap (
        network   TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        event_id  TEXT NOT NULL,
        room      TEXT NOT NULL,
        inbound   INTEGER NOT NULL,
        created   REAL NOT NULL,
        PRIMARY KEY (network, remote_id)
    ) WITHOUT ROWID;
    CREATE INDEX idmap_event ON idmap (event_id, network, room);
    CREATE TABLE cursors (
        network TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (network, key)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        network    TEXT NOT NULL,
        room       TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        txn_id     TEXT NOT NULL UNIQUE,
        payload    TEXT NOT NULL,
        state      TEXT NOT NULL DEFAULT 'pending',
        attempts   INTEGER NOT NULL DEFAULT 0,
        created    REAL NOT NULL,
        last_error TEXT
    );
    CREATE INDEX outbox_dest ON outbox (state, network, room, seq);
    CREATE TABLE messages (
        event_id TEXT PRIMARY KEY,
        payload  TEXT NOT NULL,
        created  REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # v2, reactions and direct replies: what a removed reaction was (a Matrix redaction
    # names only the reaction's event), and who already got the one automatic answer to
    # a private message, so a restart does not answer them again.
    """
    CREATE TABLE reactions (
        event_id TEXT PRIMARY KEY,
        target   TEXT NOT NULL,
        key      TEXT NOT NULL,
        created  REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE direct_replies (
        network TEXT NOT NULL,
        sender  TEXT NOT NULL,
        replied REAL NOT NULL,
        PRIMARY KEY (network, sender)
    ) WITHOUT ROWID;
    """,
    # v3: retention deletes quoting copies and id map rows by age, a day's worth at a
    # time, without scanning years of them.
    """
    CREATE INDEX messages_created ON messages (created);
    CREATE INDEX idmap_created ON idmap (created);
    """,
    # v4: whom a person last wrote to, or was written to by, across networks: a private
    # message to the relay that names no one goes there (`imbridge.direct`).
    """
    CREATE TABLE direct_peers (
        network      TEXT NOT NULL,
        address      TEXT NOT NULL,
        peer_network TEXT NOT NULL,
        peer_user    TEXT NOT NULL,
        updated      REAL NOT NULL,
        PRIMARY KEY (network, address)
    ) WITHOUT ROWID;
    """,
)


class Database:
    """Async access to the state database; see the module docstring for who runs what."""

    def __init__(
        self, path: Path | str, migrations: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        self._migrations = {"core": CORE_MIGRATIONS, **(migrations or {})}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imbridge-db")
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Future[None] | None = None
        self._unchecked = 0
        self._pending: deque[_Job] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._filled = asyncio.Event()

    async def open(self) -> Database:
        await self._call(self._open_sync)
        return self

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _open_sync(self) -> None:
        if isinstance(self.path, Path):
            # Created 0600 before SQLite sees it: SQLite gives -wal and -shm the
            # database's mode, so those are private from their first byte too.
            os.close(statefiles.open_private(self.path, os.O_RDWR)[0])
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            # Takes effect on a new file only. Each commit appends every page it dirtied to
            # the WAL; the relay path dirties a few pages in many tables per event, so
            # half-size pages make its commits ~20% cheaper (measured in bench/core.py).
            conn.execute("PRAGMA page_size=2048")
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only a power
            # loss can lose the last commits, which the outbox then resends.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            # Deleted rows are overwritten with zeros, in their pages and on the free
            # list: a purged message must leave no word in the file (docs/archive.md).
            conn.execute("PRAGMA secure_delete=ON")
            self._migrate(conn)
            if isinstance(self.path, Path):  # files made by an older version, or by hand
                wal, shm = (self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))
                statefiles.restrict(self.path, wal, shm)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        for component, steps in self._migrations.items():
            row = conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (component,)
            ).fetchone()
            current = row[0] if row else 0
            if current > len(steps):
                raise StateError(
                    f"state database {self.path} has {component} schema v{current}, newer "
                    f"than this imbridge knows (v{len(steps)}); upgrade imbridge"
                )
            for version in range(current, len(steps)):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(steps[version]):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT OR REPLACE INTO schema_version VALUES (?, ?)",
                        (component, version + 1),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    async def transact(
        self, fn: Callable[[sqlite3.Connection], T], *, background: bool = False
    ) -> T:
        """Runs `fn` inside a committed transaction, grouped with concurrent callers.
        `background`: `fn` may take long, so it runs alone in the database thread."""
        return cast(T, await self.submit(fn, background=background))

    def submit(self, fn: TxnFn, *, background: bool = False) -> asyncio.Future[Any]:
        """Queues `fn` now, in order, and returns the future of its result; for callers
        that must not wait for the commit before going on (but learn its outcome)."""
        job = self._enqueue(ready=True, kind=_WRITE, background=background)
        job.fn = fn
        return job.fut

    def reserve(self) -> Slot:
        """Holds a place in the commit order for a transaction not yet known; every later
        write waits until the slot is filled or released."""
        return Slot(self, self._enqueue(ready=False, kind=_WRITE, background=False))

    def _enqueue(self, *, ready: bool, kind: int, background: bool) -> _Job:
        if self._conn is None:
            raise StateError("state database is not open")
        job = _Job(asyncio.get_running_loop().create_future(), ready, kind, background)
        self._pending.append(job)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return job

    def _fill(self, job: _Job, fn: TxnFn | None) -> None:
        job.fn = fn
        job.ready = True
        self._filled.set()

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, background: bool = False) -> T:
        """Runs a read-only `fn` outside any transaction (other processes reading the
        file are not blocked), after every queued write, including those of tasks already
        created but not yet run (`intake.Intake`)."""
        await asyncio.sleep(0)
        job = self._enqueue(ready=True, kind=_READ, background=background)
        job.fn = fn
        return cast(T, await job.fut)

    async def _flush(self) -> None:
        pending = self._pending
        while pending:
            head = pending[0]
            if not head.ready:  # the next write in order is still being prepared
                self._filled.clear()
                await self._filled.wait()
                continue
            if head.fn is None:  # released without a transaction
                pending.popleft()
                _settle(head, (True, None))
                continue
            if head.kind == _READ or head.background:
                pending.popleft()
                _settle(head, await self._run_alone(head))
                await asyncio.sleep(0)
                continue
            batch: list[_Job] = []
            while pending and len(batch) < MAX_BATCH:
                job = pending[0]
                if not job.ready or job.kind == _READ or job.background:
                    break
                pending.popleft()
                if job.fn is None:
                    _settle(job, (True, None))
                else:
                    batch.append(job)
            if not batch:
                continue
            try:
                results = self._run_batch([job.fn for job in batch])
            except Exception as exc:  # noqa: BLE001 - the commit failed: every caller learns it
                results = [(False, exc)] * len(batch)
            for job, result in zip(batch, results, strict=True):
                _settle(job, result)
            self._after_writes(len(batch))
            await asyncio.sleep(0)  # let the callers go on before the next batch

    async def _run_alone(self, job: _Job) -> tuple[bool, Any]:
        """A read, or a job that asked for the database thread."""
        if not job.background:
            return self._run_read([job.fn])[0]
        run = self._run_batch if job.kind == _WRITE else self._run_read
        try:
            return (await self._call(run, [job.fn]))[0]
        except Exception as exc:  # noqa: BLE001 - that caller learns it
            return (False, exc)

    def _run_read(self, fns: list[TxnFn | None]) -> list[tuple[bool, Any]]:
        try:
            return [(True, _must(fns[0])(self._require()))]
        except Exception as exc:  # noqa: BLE001 - reported to that caller only
            return [(False, exc)]

    def _run_batch(self, fns: list[TxnFn | None]) -> list[tuple[bool, Any]]:
        conn = self._require()
        out: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(fns) == 1:  # alone in its commit: a failure rolls back just it anyway
                try:
                    out.append((True, _must(fns[0])(conn)))
                except Exception as exc:  # noqa: BLE001 - reported to that caller only
                    conn.execute("ROLLBACK")
                    return [(False, exc)]
                conn.execute("COMMIT")
                return out
            for fn in fns:
                conn.execute("SAVEPOINT job")
                try:
                    out.append((True, _must(fn)(conn)))
                except Exception as exc:  # noqa: BLE001 - reported to that caller only
                    conn.execute("ROLLBACK TO job")
                    out.append((False, exc))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    def _after_writes(self, jobs: int) -> None:
        """Starts a background checkpoint every `CHECKPOINT_EVERY` write jobs, so that
        the loop's commits never copy the WAL into the database file themselves."""
        self._unchecked += jobs
        if self._unchecked < CHECKPOINT_EVERY or not isinstance(self.path, Path):
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._unchecked = 0
        self._checkpoint = asyncio.get_running_loop().run_in_executor(
            self._executor, self._checkpoint_sync
        )

    def _checkpoint_sync(self) -> None:
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False
                )
                self._checkpointer.execute("PRAGMA busy_timeout=5000")
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # the backstop checkpoint on the loop catches up later
            pass

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError("state database is not open")
        return self._conn

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._checkpointer is not None:
            checkpointer, self._checkpointer = self._checkpointer, None
            await self._call(checkpointer.close)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        self._executor.shutdown(wait=True)


class _Job:
    __slots__ = ("background", "fn", "fut", "kind", "ready")

    def __init__(self, fut: asyncio.Future[Any], ready: bool, kind: int, background: bool) -> None:
        self.fn: TxnFn | None = None
        self.fut = fut
        self.ready = ready
        self.kind = kind
        self.background = background


def _settle(job: _Job, result: tuple[bool, Any]) -> None:
    if job.fut.done():  # its caller was cancelled
        return
    ok, value = result
    if ok:
        job.fut.set_result(value)
    else:
        job.fut.set_exception(value)


class Slot:
    """A reserved place in the commit order (see `Database.reserve`). Fill it with `run`,
    or `release` it; the relay does one of them in a `finally`."""

    __slots__ = ("_db", "_job")

    def __init__(self, db: Database, job: _Job) -> None:
        self._db = db
        self._job = job

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._job.ready:
            raise StateError("slot already used")
        self._db._fill(self._job, fn)
        return cast(T, await self._job.fut)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `fn` after the writes queued before this slot and before the slot itself
        (`Database.read` would wait for the slot, which waits for the read)."""
        if self._job.ready:
            raise StateError("slot already used")
        job = _Job(asyncio.get_running_loop().create_future(), True, _READ, False)
        job.fn = fn
        pending = self._db._pending
        pending.insert(pending.index(self._job), job)
        self._db._filled.set()
        return cast(T, await job.fut)

    def release(self) -> None:
        """Gives the place up if `run` was not called; harmless after it."""
        if not self._job.ready:
            self._db._fill(self._job, None)


def _must(fn: TxnFn | None) -> TxnFn:
    if fn is None:
        raise StateError("unfilled transaction slot")
    return fn


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
