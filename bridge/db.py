"""The state database: one SQLite file in `bridge.state_dir`.

Why not one aiosqlite call per statement: the relay path must commit an event, its
decisions and its queued deliveries atomically, and at thousands of events per second.
So callers hand a whole transaction function to `transact`; functions that arrive while
others wait are grouped into one commit (group commit), each under its own savepoint so
one failing function does not undo the others.

Where a transaction runs depends on the engine (`imbridge.engines`): SQLite's short ones
on the event loop, PostgreSQL's in the database thread. Work that may take long (archive
indexing, purges, exports, verification) asks for `background=True` and runs in the
thread on either; the one connection is still used by one caller at a time, because the
queue waits for it. Transaction functions must therefore not assume the loop's thread:
what they change besides the database is plain counters and per-key entries, each one
step.

Writes commit in the order they were submitted, and a caller that must first await
something (the relay looking up a quoted message) keeps its place with `reserve`. A read
issued while writes are queued runs after them, so it sees everything submitted before
it: an adapter looking up an event it has just handed to the relay finds it.

Schema migrations: `imbridge.migrate`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from imbridge.dialect import Step, serialize
from imbridge.engines import Engine, engine_for
from imbridge.errors import StateError

if TYPE_CHECKING:
    from imbridge.config.schema import BridgeSection

T = TypeVar("T")


class Cursor(Protocol):
    """What a transaction function reads from a statement, on either engine."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Conn(Protocol):
    """The connection a transaction function is given: `sqlite3.Connection` itself, or
    the PostgreSQL engine's wrapper, which takes the same `?` placeholders. Statements
    are written once, in the SQL both engines speak (`INSERT ... ON CONFLICT`,
    `RETURNING`); what differs lives in `imbridge.dialect`."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


TxnFn = Callable[[Conn], Any]
MAX_BATCH = 128
"""Jobs per commit: a batch may run on the event loop, so it must stay short."""
DB_NAME = "imbridge.db"
"""The SQLite state database's file in `bridge.state_dir`."""

_WRITE, _READ = 0, 1

CORE_MIGRATIONS: tuple[Step, ...] = (
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
    # v5: the instances sharing a PostgreSQL state (`imbridge.leases`), each with the
    # digest of its config, so that a mismatch is seen; unused with SQLite.
    """
    CREATE TABLE instances (
        instance      TEXT PRIMARY KEY,
        config_sha256 TEXT NOT NULL,
        seen          REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)


def location(bridge: BridgeSection) -> Path | str:
    """Where a config's state database is: its PostgreSQL URL, or the SQLite file."""
    if bridge.database is not None:
        return bridge.database.get_secret_value()
    return bridge.state_dir / DB_NAME


class Database:
    """Async access to the state database; see the module docstring for who runs what."""

    def __init__(
        self, location: Path | str, migrations: Mapping[str, Sequence[Step]] | None = None
    ) -> None:
        """`location`: the SQLite file (or ":memory:"), or a PostgreSQL URL."""
        self.engine: Engine = engine_for(location)
        self._migrations = {"core": CORE_MIGRATIONS, **(migrations or {})}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imbridge-db")
        self._conn: Conn | None = None
        self._housekeeping: asyncio.Future[None] | None = None
        self._pending: deque[_Job] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._filled = asyncio.Event()

    @property
    def dialect(self) -> str:
        return self.engine.dialect

    async def open(self) -> Database:
        await self._call(self.engine.open, self._migrations)
        self._conn = self.engine.connection()
        return self

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def transact(self, fn: Callable[[Conn], T], *, background: bool = False) -> T:
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

    async def read(self, fn: Callable[[Conn], T], *, background: bool = False) -> T:
        """Runs a read-only `fn` outside any transaction (other processes reading the
        database are not blocked), after every queued write, including those of tasks
        already created but not yet run (`intake.Intake`)."""
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
            while pending and len(batch) < min(MAX_BATCH, self.engine.max_batch):
                job = pending[0]
                if not job.ready or job.kind == _READ or job.background:
                    break
                pending.popleft()
                if job.fn is None:
                    _settle(job, (True, None))
                else:
                    batch.append(job)
            if batch:
                await self._commit(batch)
                await asyncio.sleep(0)  # let the callers go on before the next batch

    async def _commit(self, batch: list[_Job]) -> None:
        fns = [job.fn for job in batch]
        try:
            if self.engine.on_loop:
                results = self._run_batch(fns)
            else:
                results = await self._call(self._run_batch, fns)
        except Exception as exc:  # noqa: BLE001 - the commit failed: every caller learns it
            results = [(False, exc)] * len(batch)
        for job, result in zip(batch, results, strict=True):
            _settle(job, result)
        self._after_writes(len(batch))

    async def _run_alone(self, job: _Job) -> tuple[bool, Any]:
        """A read, or a job that asked for the database thread."""
        if not job.background and self.engine.on_loop:
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
        with self.engine.pipelined():
            return self._run_jobs(self._require(), fns)

    def _run_jobs(self, conn: Conn, fns: list[TxnFn | None]) -> list[tuple[bool, Any]]:
        engine = self.engine
        out: list[tuple[bool, Any]] = []
        conn.execute(engine.begin)
        try:
            # First, before any row is touched: writers in other instances wait here
            # rather than deadlock on each other's rows (`dialect.serialize`).
            serialize(conn)
            if len(fns) == 1:  # alone in its commit: a failure rolls back just it anyway
                try:
                    out.append((True, _must(fns[0])(conn)))
                except Exception as exc:  # noqa: BLE001 - reported to that caller only
                    engine.recover()
                    conn.execute("ROLLBACK")
                    return [(False, exc)]
                # No settle of its own: an error still waiting surfaces at the commit's,
                # and reaches this one caller all the same.
                conn.execute("COMMIT")
                engine.settle()
                return out
            for fn in fns:
                conn.execute("SAVEPOINT job")
                try:
                    result = _must(fn)(conn)
                    engine.settle()  # its statements' errors are its own, not the next job's
                    out.append((True, result))
                except Exception as exc:  # noqa: BLE001 - reported to that caller only
                    engine.recover()
                    conn.execute("ROLLBACK TO SAVEPOINT job")
                    out.append((False, exc))
                conn.execute("RELEASE SAVEPOINT job")
            conn.execute("COMMIT")
            engine.settle()
        except BaseException:
            engine.recover()
            _rollback(conn)
            raise
        return out

    def _after_writes(self, jobs: int) -> None:
        """Starts the engine's housekeeping in the thread when due, one at a time."""
        if self._housekeeping is not None and not self._housekeeping.done():
            return
        work = self.engine.after_writes(jobs)
        if work is not None:
            self._housekeeping = asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _require(self) -> Conn:
        if self._conn is None:
            raise StateError("state database is not open")
        return self._conn

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def aclose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._housekeeping is not None:
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        if self._conn is not None:
            self._conn = None
            await self._call(self.engine.close)
        self._executor.shutdown(wait=True)


def _rollback(conn: Conn) -> None:
    """Ends a failed transaction; quietly, since the failure may have ended it already."""
    try:
        conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001, S110 - no transaction was open: nothing to undo
        pass


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

    async def run(self, fn: Callable[[Conn], T]) -> T:
        if self._job.ready:
            raise StateError("slot already used")
        self._db._fill(self._job, fn)
        return cast(T, await self._job.fut)

    async def read(self, fn: Callable[[Conn], T]) -> T:
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
