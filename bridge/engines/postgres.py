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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from imbridge.dialect import POSTGRESQL, Step, placeholders
from imbridge.errors import StateError
from imbridge.migrate import apply_migrations

MIGRATION_LOCK = 0x696D6272_69646765  # "imbridge": instances started together migrate in turn
POOL_MAX = 4
STATE_LOCK = 0x696D6272_69646767
_ENDS = frozenset({"COMMIT", "ROLLBACK"})


class PgConn:
    """A psycopg connection that takes the statements written for both engines."""

    dialect = POSTGRESQL
    __slots__ = ("raw", "serialized")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.serialized = False

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if sql in _ENDS:
            self.serialized = False
        return self.raw.execute(placeholders(sql), parameters)

    def serialize(self) -> None:
        """Waits for the state lock, held until this transaction ends: transactions that
        append to the archive's chain or queue deliveries commit one at a time across
        instances, so the chain has one writer and the outbox's sequence numbers are in
        commit order (an owner reading `seq > last` never misses a row committed late)."""
        if not self.serialized:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (STATE_LOCK,))
            self.serialized = True

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(placeholders(sql), parameters)
        return cur


def connect(url: str) -> PgConn:
    """A connection of its own, outside the pool (a reader in another thread)."""
    return PgConn(psycopg.connect(url, autocommit=True))


class PostgresEngine:
    dialect = POSTGRESQL
    on_loop = False
    begin = "BEGIN"

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

    def after_writes(self, jobs: int) -> Callable[[], None] | None:
        return None  # the server checkpoints by itself

    def close(self) -> None:
        if self.pool is not None and self._conn is not None:
            self.pool.putconn(self._conn.raw)
        if self.pool is not None:
            self.pool.close()
        self.pool = self._conn = None
