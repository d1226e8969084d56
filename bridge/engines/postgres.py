"""PostgreSQL through psycopg 3, for state shared by several instances or kept on a
server the organisation already runs (docs/scale.md).

Why a synchronous psycopg connection in the database thread rather than psycopg's async
one on the loop: every transaction in imbridge is a plain function over a connection
(`imbridge.db.Conn`), the same for both engines, so that each statement is written once.
Those functions run in the database thread here, so the loop never waits for a round
trip; the commit queue in `imbridge.db` is the same for both engines (group commit, the
order of `reserve`, reads after queued writes).

Connections come from a psycopg-pool pool: the commit queue holds one for its life, and
readers that must not wait behind it (record sinks, the console) take their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import ConnectionPool

from imbridge.dialect import POSTGRESQL, Step, placeholders, snapshot
from imbridge.errors import StateError
from imbridge.migrate import apply_migrations

if TYPE_CHECKING:
    from imbridge.db import Conn

MIGRATION_LOCK = 0x696D6272_69646765  # "imbridge": instances started together migrate in turn
POOL_MAX = 4
STATE_LOCK = 0x696D6272_69646767
_ENDS = frozenset({"COMMIT", "ROLLBACK"})


class PgConn:
    """A psycopg connection that takes the statements written for both engines.

    Inside `pipelined` (a group commit), statements go out without waiting for the
    server: a relayed event is about ten small statements, and waiting for each one's
    round trip was most of its cost. Their results are waited for only where a caller
    reads one (a row, a row count), and at `settle`, which the commit queue calls at the
    end of each job, so that a failing statement raises in the job that sent it.
    Pipeline mode refuses COPY and server-side (named) cursors: work that needs them
    takes a connection of its own (`connect`) rather than a transaction function."""

    dialect = POSTGRESQL
    __slots__ = ("_epoch", "_free", "_locked", "_pipeline", "_unsettled", "_used", "raw")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._pipeline: psycopg.Pipeline | None = None
        self._unsettled = False
        self._epoch = 0
        self._locked = False
        self._free: list[psycopg.Cursor[Any]] = []
        self._used: list[psycopg.Cursor[Any]] = []

    @property
    def batch_epoch(self) -> int | None:
        """Inside a group commit, a number that changes whenever what its jobs wrote may
        have been undone (a job rolled back to its savepoint) and at the commit; None
        outside one. What a job learnt of its own writes holds for the next job while it
        stays the same (`ArchiveStore.append` keeps the chain's head so)."""
        return self._epoch if self._pipeline is not None else None

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        if sql in _ENDS:
            self._locked = False
        if self._pipeline is None:
            return self.raw.execute(placeholders(sql), parameters)
        cur = self._cursor()
        cur.execute(placeholders(sql), parameters)
        return self._pending(cur)

    def lock_state(self) -> None:
        """Waits for the state lock, held until this transaction ends: writers of every
        instance commit one at a time, so the archive's chain has one writer and the
        outbox's sequence numbers are in commit order (an owner reading `seq > last`
        never misses a row committed late). In a pipeline the server takes the lock
        before it runs what follows; nothing here waits for it."""
        if not self._locked:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (STATE_LOCK,))
            self._locked = True

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        cur = self.raw.cursor() if self._pipeline is None else self._cursor()
        cur.executemany(placeholders(sql), parameters)
        return cur if self._pipeline is None else self._pending(cur)

    def _cursor(self) -> psycopg.Cursor[Any]:
        """A cursor for one statement of a group commit: a new psycopg cursor costs more
        than the statement it runs (about 17 of 27 us of client CPU, measured), so the
        cursors of finished jobs are used again (`recycle`)."""
        cur = self._free.pop() if self._free else self.raw.cursor()
        self._used.append(cur)
        return cur

    def recycle(self) -> None:
        """Between two jobs, after `settle` or `recover`: what a finished job was
        handed is never read again, so its cursors can carry the next job's statements."""
        self._free.extend(self._used)
        self._used.clear()

    def _pending(self, cur: psycopg.Cursor[Any]) -> PendingCursor:
        self._unsettled = True
        return PendingCursor(cur, self)

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Statements sent until the block ends wait for the server only when read."""
        with self.raw.pipeline() as pipeline:
            self._pipeline = pipeline
            self._epoch += 1
            try:
                yield
            finally:
                self._pipeline = None
                self._unsettled = False
                self._epoch += 1

    def settle(self) -> None:
        """Waits for every statement sent so far; raises the first one's error."""
        if self._pipeline is not None and self._unsettled:
            self._unsettled = False
            self._pipeline.sync()

    def recover(self) -> None:
        """After an error: lets the server skip the rest of what was sent with it (a
        pipeline refuses every statement after an error until it is synced), so the
        caller can roll back to its savepoint."""
        self._epoch += 1
        if self._pipeline is not None:
            self._unsettled = False
            try:
                self._pipeline.sync()
            except psycopg.Error:  # that error, or the statements skipped after it
                pass

    @contextmanager
    def streamed(self) -> Iterator[Conn]:
        """A read-only snapshot whose statements run in server-side cursors, for a walk
        through a whole table (`imbridge.dialect.streamed`). Not inside a group commit:
        a pipeline refuses named cursors."""
        self.raw.execute(snapshot(POSTGRESQL))
        conn = ServerCursors(self.raw)
        try:
            yield conn
        finally:
            for cur in conn.opened:
                cur.close()
            self.raw.execute("ROLLBACK")


class ServerCursors:
    """A connection whose statements run in server-side cursors: `fetchmany` then holds
    one batch in memory, not the whole result (psycopg's default cursor takes every row
    of a query at once, which for years of archive is more memory than the host has)."""

    dialect = POSTGRESQL

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._names = itertools.count()
        self.opened: list[psycopg.ServerCursor[Any]] = []

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor(name=f"imbridge_walk_{next(self._names)}")
        self.opened = [c for c in self.opened if not c.closed]  # a walk may run thousands
        self.opened.append(cur)
        cur.execute(placeholders(sql), parameters)
        return cur

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        raise StateError("a streamed snapshot is read-only")


class PendingCursor:
    """A statement's cursor in a pipeline: reading it first waits for the server."""

    __slots__ = ("_conn", "_cur")

    def __init__(self, cur: psycopg.Cursor[Any], conn: PgConn) -> None:
        self._cur = cur
        self._conn = conn

    def _ready(self) -> psycopg.Cursor[Any]:
        self._conn.settle()
        return self._cur

    @property
    def rowcount(self) -> int:
        return self._ready().rowcount

    def fetchone(self) -> Any:
        return self._ready().fetchone()

    def fetchall(self) -> list[Any]:
        return self._ready().fetchall()

    def fetchmany(self, size: int = 0, /) -> list[Any]:
        return self._ready().fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ready())

    def close(self) -> None:
        self._ready().close()


def connect(url: str) -> PgConn:
    """A connection of its own, outside the pool (a reader in another thread)."""
    return PgConn(psycopg.connect(url, autocommit=True))


class PostgresEngine:
    dialect = POSTGRESQL
    on_loop = False
    begin = "BEGIN"
    max_batch = 64
    """Each job of a group commit runs under a savepoint, a subtransaction with an id of
    its own once it writes. The server keeps 64 of them per transaction where every
    other session's snapshot sees them; past that the transaction "overflows", and
    every other session (another instance, a DBA's query) looks each one up in
    pg_subtrans instead, which slows them all while it lasts. A commit per 64 events
    costs one more flush per 128, which group commit hardly feels."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._conn: PgConn | None = None

    @property
    def label(self) -> str:
        """The URL without its password, for messages."""
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        where = f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"postgresql://{info.get('user', '')}@{where}"

    def open(self, migrations: Mapping[str, Sequence[Step]]) -> None:
        try:
            pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                self.url, min_size=1, max_size=POOL_MAX, kwargs={"autocommit": True},
                open=False, name="imbridge",
            )  # fmt: skip
            pool.open(wait=True, timeout=30)
            raw = pool.getconn()
            conn = PgConn(raw)
            apply_migrations(
                conn, migrations, dialect=POSTGRESQL, label=self.label, begin=self.begin,
                lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",
            )  # fmt: skip
        except (psycopg.Error, TimeoutError) as exc:
            raise StateError(f"cannot open state database {self.label}: {exc}") from exc
        self.pool, self._conn = pool, conn

    def connection(self) -> PgConn:
        if self._conn is None:
            raise StateError("state database is not open")
        return self._conn

    def pipelined(self) -> AbstractContextManager[None]:
        return self.connection().pipelined()

    def settle(self) -> None:
        conn = self.connection()
        conn.settle()
        conn.recycle()

    def recover(self) -> None:
        conn = self.connection()
        conn.recover()
        conn.recycle()

    def after_writes(self, jobs: int) -> Callable[[], None] | None:
        return None  # the server checkpoints by itself

    def close(self) -> None:
        if self.pool is not None and self._conn is not None:
            self.pool.putconn(self._conn.raw)
        if self.pool is not None:
            self.pool.close()
        self.pool = self._conn = None
