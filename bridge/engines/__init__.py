"""The two engines the state database runs on: SQLite, a file in `bridge.state_dir` (the
default), and PostgreSQL, for an organisation that relays hundreds of rooms or keeps
years of archive on a server its DBAs back up and replicate (docs/scale.md).

`imbridge.db.Database` owns the commit queue and the transaction semantics; an engine
supplies the connection, the statements that open a transaction, and what runs where.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from imbridge.db import Conn
    from imbridge.dialect import Step


class Engine(Protocol):
    dialect: str
    on_loop: bool
    """Whether short transactions run on the event loop (SQLite: a commit is a few page
    writes to the WAL) or always in the database thread (PostgreSQL: every statement is
    a round trip to the server, which the loop must not wait for)."""
    begin: str
    """The statement that opens a write transaction."""
    max_batch: int
    """Jobs per group commit at most (`imbridge.db.MAX_BATCH` bounds it too)."""

    def open(self, migrations: Mapping[str, Sequence[Step]]) -> None:
        """Connects and migrates; runs in the database thread."""

    def connection(self) -> Conn: ...

    def pipelined(self) -> AbstractContextManager[None]:
        """Where a group commit runs: PostgreSQL sends its statements without waiting
        for each one's answer (`PgConn`)."""

    def settle(self) -> None:
        """Waits for what the job just run has sent, so its errors are its own."""

    def recover(self) -> None:
        """Readies the connection for a rollback after a job's error."""

    def after_writes(self, jobs: int) -> Callable[[], None] | None:
        """Housekeeping due after `jobs` more write jobs, to run in the database thread
        (SQLite's WAL checkpoint), or None."""

    def close(self) -> None: ...


def is_url(location: Path | str) -> bool:
    """Whether a state location is a PostgreSQL URL rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def engine_for(location: Path | str) -> Engine:
    """The engine for a state location; psycopg is imported only for a URL."""
    if is_url(location):
        from imbridge.engines.postgres import PostgresEngine  # noqa: PLC0415 - only when configured

        return PostgresEngine(str(location))
    from imbridge.engines.sqlite import SqliteEngine  # noqa: PLC0415 - its sibling, for symmetry

    return SqliteEngine(location)
