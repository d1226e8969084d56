"""Copies a SQLite state database into PostgreSQL (`imbridge db migrate`), for an
organisation moving its state to a server it already runs (docs/scale.md).

What this protects:

* The copy is the source as it stood: the source is held under SQLite's write lock
  (`BEGIN IMMEDIATE`) for the whole run, so no daemon writes to it meanwhile (one that
  starts fails on the lock) and every batch reads the same state.
* Each batch commits on the target together with its place in `migration_progress`, so
  a run interrupted at any point (Ctrl-C, kill, a lost server) goes on where it stopped
  and copies no row twice. The progress names the source by a digest of its content: a
  rerun against a source that changed in between (the daemon ran on it) is refused
  rather than mixed.
* The archive is copied as stored: records with their hashes and the chain's head, a
  sealed body still sealed. The full-text terms are read back from the FTS5 table (it
  keeps their text) and indexed again on the target the way the daemon indexes them, so
  an encrypted archive's HMAC tokens move as they are and nothing is decrypted.
* Nothing is appended to the chain or the head file: the SQLite state stays a valid
  archive if the operator goes back to it.

Identity columns carry on past the copied values (`setval`), so the daemon's next
outbox row numbers after the last SQLite one and order per destination holds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from imbridge import textlinks
from imbridge.archive import fulltext
from imbridge.archive.store import ARCHIVE_MIGRATIONS
from imbridge.console.migrations import CONSOLE_MIGRATIONS
from imbridge.db import CORE_MIGRATIONS, Conn
from imbridge.dialect import POSTGRESQL, Step
from imbridge.engines.postgres import PgConn
from imbridge.engines.sqlite import SqliteEngine
from imbridge.errors import StateError
from imbridge.sinks.feed import SINK_MIGRATIONS

C = TypeVar("C", bound=Conn)
BATCH = 5000
"""Rows per target transaction: large enough that a round trip per batch costs little,
small enough that an interruption loses seconds of work at most."""
PROGRESS_TABLE = "migration_progress"
_SOURCE_ROW = "(source)"
_INDEXES_ROW = "(indexes)"
_DEFERRED = (
    "SELECT i.indexname, i.indexdef FROM pg_indexes i"
    " JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid"
    " WHERE i.schemaname = current_schema() AND i.tablename = 'archive_fts'"
    " AND NOT x.indisprimary"
)
"""The full-text index's secondary indexes (its GIN), as the target's migrations made
them."""


@dataclass(frozen=True, slots=True)
class Table:
    """One table copied as it is, walked in the order of its primary key."""

    name: str
    key: tuple[str, ...]


TABLES: tuple[Table, ...] = (
    Table("cursors", ("network", "key")),
    Table("outbox", ("seq",)),
    Table("idmap", ("network", "remote_id")),
    Table("messages", ("event_id",)),
    Table("reactions", ("event_id",)),
    Table("direct_replies", ("network", "sender")),
    Table("direct_peers", ("network", "address")),
    Table("long_texts", ("key",)),
    Table("sink_cursors", ("name",)),
    Table("console_holds", ("name",)),
    Table("console_logins", ("username",)),
    Table("archive_chain", ("id",)),
    Table("archive_notices", ("network", "room")),
    Table("archive_file_queue", ("event_seq", "idx")),
    Table("archive_file_refs", ("seq",)),
    Table("archive_records", ("seq",)),
)
RECORDS = "archive_records"
NOT_COPIED = frozenset({"schema_version", "sqlite_sequence", "archive_fts_pending", "instances"})
"""Made by the target's own migrations, or rebuilt there (the full-text index: every
table whose name starts with `archive_fts`, FTS5's shadow tables included), or the
instances' own (`instances`: which processes share a PostgreSQL state, written by them)."""


def migrations() -> dict[str, Sequence[Step]]:
    """Every schema component the daemon and the console create, so the target has all
    the tables the source can have (a test checks it against the daemon's)."""
    return {
        "core": CORE_MIGRATIONS,
        "archive": ARCHIVE_MIGRATIONS,
        "sinks": SINK_MIGRATIONS,
        "textlinks": textlinks.MIGRATIONS,
        "console": CONSOLE_MIGRATIONS,
    }


def is_copied(table: str) -> bool:
    """Whether a source table's rows are copied as they are (a `TABLES` entry)."""
    return any(t.name == table for t in TABLES)


def is_derived(table: str) -> bool:
    return table in NOT_COPIED or table.startswith("archive_fts")


class TargetNotEmpty(StateError):
    """The target already holds relay state that is not an interrupted copy of this
    source: copying into it would mix two states."""


class SourceMissing(StateError):
    """No SQLite state database where the config says."""


def open_source(path: Path) -> sqlite3.Connection:
    """The source brought to the current schema (as the daemon would on start), then
    held under the write lock until closed. Raises `StateError` if another process
    holds the lock past SQLite's busy timeout: a daemon is writing to it."""
    if not path.is_file():
        raise SourceMissing(f"no SQLite state database at {path}")
    locked = StateError(f"{path} is locked by another process: stop the daemon before migrating")
    engine = SqliteEngine(path)
    try:
        engine.open(migrations())
    except StateError as exc:
        if _busy(exc.__cause__):
            raise locked from None
        raise
    conn = engine.connection()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        conn.close()
        if _busy(exc):
            raise locked from None
        raise
    return conn


def _busy(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY


def columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in src.execute(f"PRAGMA table_info({table})")]


def _select(table: Table, cols: Sequence[str], *, after: bool, upto: bool = False) -> str:
    keys = ", ".join(table.key)
    marks = ", ".join("?" * len(table.key))
    where = [f"({keys}) > ({marks})"] if after else []
    if upto:
        where.append(f"({keys}) <= ({marks})")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    names = ", ".join(f'"{c}"' for c in cols)
    return f"SELECT {names} FROM {table.name}{clause} ORDER BY {keys}"  # noqa: S608 - fixed names


def counts(src: sqlite3.Connection) -> dict[str, int]:
    return {
        t.name: int(src.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0])  # noqa: S608 - fixed names
        for t in TABLES
    }


def fingerprint(src: sqlite3.Connection) -> str:
    """A digest of everything copied: archive records through the chain's head (each
    record's hash covers its content and the one before), every other table row by row.
    Equal digests: the same state, so an interrupted copy of it may be resumed."""
    digest = hashlib.blake2b(digest_size=20)
    for table in TABLES:
        if table.name == RECORDS:
            row = src.execute(f"SELECT count(*), max(seq) FROM {RECORDS}").fetchone()  # noqa: S608 - fixed name
            digest.update(repr(tuple(row)).encode())
            continue
        digest.update(table.name.encode())
        for row in src.execute(_select(table, columns(src, table.name), after=False)):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def outbox_next(src: sqlite3.Connection) -> int:
    """The last outbox number SQLite handed out (rows delivered since are gone)."""
    row = src.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    top = src.execute("SELECT max(seq) FROM outbox").fetchone()
    return max(int(row[0]) if row else 0, int(top[0] or 0))


def in_transaction(dst: C, work: Callable[[C], None]) -> None:
    dst.execute("BEGIN")
    try:
        work(dst)
    except BaseException:
        try:
            dst.execute("ROLLBACK")
        except Exception:  # noqa: BLE001, S110 - the connection is gone: the server rolled back
            pass
        raise
    dst.execute("COMMIT")


@dataclass
class Progress:
    """Where each table's copy stands: the last key copied, and whether it is done."""

    last: dict[str, list[Any]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    copied: int = 0


def prepare_target(dst: Conn, source: str, digest: str) -> Progress:
    """Starts a copy into an empty target, or finds where an interrupted copy of this
    same source stopped; refuses anything else."""
    tables = {str(r[0]) for r in dst.execute(_PG_TABLES)}
    if PROGRESS_TABLE in tables:
        rows = dst.execute(f"SELECT name, last_key, copied, done FROM {PROGRESS_TABLE}").fetchall()  # noqa: S608 - fixed name
        mark = {str(r[0]): r for r in rows}.get(_SOURCE_ROW)
        if mark is None or json.loads(mark[1]) != {"source": source, "digest": digest}:
            was = json.loads(mark[1])["source"] if mark is not None else "an unknown source"
            raise TargetNotEmpty(
                f"the target holds an unfinished copy of {was} that does not match this "
                "source now (did the daemon run on it since?): drop and recreate the "
                "target database, then migrate again"
            )
        progress = Progress()
        for name, last_key, copied, done in rows:
            if name in (_SOURCE_ROW, _INDEXES_ROW):
                continue
            if last_key is not None:
                progress.last[name] = json.loads(last_key)
            if done:
                progress.done.add(name)
            progress.copied += int(copied)
        return progress
    for table in TABLES:
        if dst.execute(f"SELECT 1 FROM {table.name} LIMIT 1").fetchone() is not None:  # noqa: S608 - fixed names
            raise TargetNotEmpty(
                f"the target already holds relay state ({table.name} has rows): migrate "
                "into a new, empty database"
            )

    def start(conn: Conn) -> None:
        conn.execute(
            f"CREATE TABLE {PROGRESS_TABLE} (name TEXT PRIMARY KEY, last_key TEXT,"
            " copied BIGINT NOT NULL DEFAULT 0, done BOOLEAN NOT NULL DEFAULT false)"
        )
        conn.execute(
            f"INSERT INTO {PROGRESS_TABLE} (name, last_key) VALUES (?, ?)",  # noqa: S608 - fixed name
            (_SOURCE_ROW, json.dumps({"source": source, "digest": digest})),
        )
        # The full-text index is built once at the end instead of updated per batch: a
        # GIN insert per document cost more than the rest of the copy together. Its
        # definition waits in the progress table, so an interrupted run still makes it.
        deferred = conn.execute(_DEFERRED).fetchall()
        conn.execute(
            f"INSERT INTO {PROGRESS_TABLE} (name, last_key) VALUES (?, ?)",  # noqa: S608 - fixed name
            (_INDEXES_ROW, json.dumps([str(r[1]) for r in deferred])),
        )
        for name, _ in deferred:
            conn.execute(f'DROP INDEX "{name}"')

    in_transaction(dst, start)
    return Progress()


_PG_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"


def copy_all(
    src: sqlite3.Connection,
    dst: PgConn,
    progress: Progress,
    *,
    batch: int = BATCH,
    advance: Callable[[int], None] = lambda _: None,
) -> dict[str, int]:
    """Copies every table not done yet, a batch per target transaction; returns the
    rows this run copied per table."""
    copied: dict[str, int] = {}
    for table in TABLES:
        if table.name not in progress.done:
            copied[table.name] = _copy_table(src, dst, table, progress, size=batch, advance=advance)
    return copied


def _copy_table(
    src: sqlite3.Connection,
    dst: PgConn,
    table: Table,
    progress: Progress,
    *,
    size: int,
    advance: Callable[[int], None],
) -> int:
    cols = columns(src, table.name)
    at = [cols.index(k) for k in table.key]
    # COPY rather than INSERT: about 1.7 times the rows per second (bench/migrate.py).
    names = ", ".join(f'"{c}"' for c in cols)
    insert = f"COPY {table.name} ({names}) FROM STDIN"
    after = progress.last.get(table.name)
    total = 0
    while True:
        query = _select(table, cols, after=after is not None) + " LIMIT ?"
        rows = src.execute(query, (*(after or ()), size)).fetchall()
        last = [rows[-1][i] for i in at] if rows else after
        finished = len(rows) < size

        write = functools.partial(
            _write, src, table=table, insert=insert, rows=rows, key=at[0], last=last, done=finished
        )
        in_transaction(dst, write)
        total += len(rows)
        advance(len(rows))
        after = last
        if finished:
            return total


def _write(
    src: sqlite3.Connection,
    dst: PgConn,
    *,
    table: Table,
    insert: str,
    rows: list[Any],
    key: int,
    last: Any,
    done: bool,
) -> None:
    """One batch and the progress that names it, in the caller's transaction."""
    if rows:
        with dst.raw.cursor() as cur, cancelled_on_interrupt(dst), cur.copy(insert) as copy:
            for row in rows:
                copy.write_row(row)
        if table.name == RECORDS:
            _index(src, dst, rows[0][key], rows[-1][key])
    dst.execute(
        f"INSERT INTO {PROGRESS_TABLE} (name, last_key, copied, done) VALUES (?, ?, ?, ?)"  # noqa: S608 - fixed name
        " ON CONFLICT (name) DO UPDATE SET last_key = excluded.last_key,"
        f" copied = {PROGRESS_TABLE}.copied + excluded.copied, done = excluded.done",
        (table.name, json.dumps(last) if last is not None else None, len(rows), done),
    )


@contextmanager
def cancelled_on_interrupt(dst: PgConn) -> Iterator[None]:
    """Ctrl-C also cancels the statement on the server. psycopg does so for a query by
    itself, but a COPY that waits on the server (a lock, a full disk) would otherwise
    hold the process until the server moved: ending a COPY waits for its answer."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return

    def interrupted(signum: int, frame: FrameType | None) -> None:
        dst.raw.cancel_safe(timeout=5)
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _index(src: sqlite3.Connection, dst: Conn, first: int, last: int) -> None:
    """The full-text terms of records `first`..`last`, from the FTS5 table (which keeps
    the text it indexed) and from what still waited for it, indexed on the target by
    the daemon's own code; an encrypted archive's terms are tokens, copied as such."""
    terms = src.execute(
        "SELECT rowid, terms FROM archive_fts WHERE rowid >= ? AND rowid <= ?"
        " UNION ALL SELECT seq, terms FROM archive_fts_pending WHERE seq >= ? AND seq <= ?",
        (first, last, first, last),
    ).fetchall()
    if terms:
        dst.executemany("INSERT INTO archive_fts_pending (seq, terms) VALUES (?, ?)", terms)
        fulltext.index_pending(dst, POSTGRESQL)


def finish(src: sqlite3.Connection, dst: Conn) -> None:
    """Moves the outbox's identity past the copied numbers, builds the deferred
    indexes and drops the progress table, in one transaction: after it the target is an
    ordinary state database."""
    top = outbox_next(src)

    def work(conn: Conn) -> None:
        if top > 0:
            conn.execute("SELECT setval(pg_get_serial_sequence('outbox', 'seq'), ?)", (top,))
        row = conn.execute(
            f"SELECT last_key FROM {PROGRESS_TABLE} WHERE name = ?",  # noqa: S608 - fixed name
            (_INDEXES_ROW,),
        ).fetchone()
        for definition in json.loads(row[0]) if row is not None else ():
            conn.execute(definition)
        conn.execute(f"DROP TABLE {PROGRESS_TABLE}")

    in_transaction(dst, work)


def summary(copied: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in copied.items() if n)
