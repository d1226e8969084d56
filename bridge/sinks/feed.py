"""What a sink ships and where it stands: archive records after its cursor, then the
signed chain heads they reach, and each sink's durable cursor in the state database.

Records are read by sequence number, which is the commit order (one writer appends
them, in its transactions), so "everything after my cursor" is exactly what a sink has
not shipped: nothing is skipped and nothing reordered, however long it was away. Reads
use a read-only connection of their own in a worker thread (WAL lets it read while the
relay writes), so a sink catching up on a million records never holds the relay's
connection or the event loop. Bodies are decrypted with the archive key, as an export
would: a sink is a copy of the archive, to be protected like one (docs/hooks.md).

A head line is shipped once the records up to its `seq` are, with its exact signed text
(`line`), so whatever receives it can keep an off-host copy for `archive verify --heads`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imbridge.archive.chain import iso
from imbridge.archive.crypto import is_encrypted
from imbridge.archive.store import ArchiveStore, Row
from imbridge.db import Conn
from imbridge.dialect import dialect_of, snapshot
from imbridge.engines import is_url

SINK_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sink_cursors (
        name         TEXT PRIMARY KEY,
        seq          INTEGER NOT NULL,
        heads_offset INTEGER NOT NULL,
        updated      REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)

SCHEMA = "imbridge.record/1"


@dataclass(frozen=True, slots=True)
class Cursor:
    seq: int = 0
    """The last record shipped."""
    heads_offset: int = 0
    """Bytes of the head file whose lines were shipped (or skipped: not yet reached)."""


@dataclass(frozen=True, slots=True)
class Shipped:
    """One record as shipped: its JSON text made once, in the reading thread, with the
    body spliced in as stored (no decode and re-encode per record and sink)."""

    kind: str
    seq: int | None
    """The record's sequence number; None for a head line (its `seq` is inside)."""
    time: str
    action: str | None
    json: str


@dataclass(frozen=True, slots=True)
class Batch:
    records: list[Shipped]
    cursor: Cursor
    """Where the sink stands once this batch is shipped."""
    tail: int
    """The archive's last record, for the lag."""
    oldest_us: int | None
    """Time of the first record not shipped before this batch (None: none waiting)."""


def load_cursor(conn: Conn, name: str) -> Cursor:
    row = conn.execute(
        "SELECT seq, heads_offset FROM sink_cursors WHERE name = ?", (name,)
    ).fetchone()
    return Cursor() if row is None else Cursor(int(row[0]), int(row[1]))


def save_cursor(conn: Conn, name: str, cursor: Cursor) -> None:
    conn.execute(
        "INSERT INTO sink_cursors VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
        " seq = excluded.seq, heads_offset = excluded.heads_offset, updated = excluded.updated",
        (name, cursor.seq, cursor.heads_offset, time.time()),
    )


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def as_record(store: ArchiveStore, row: Row) -> Shipped:
    """The record as a JSON object: its columns, `body` (decrypted when sealed) and its
    chain `hash`."""
    r = row.record
    when = iso(r.ts_us)
    meta = _ENCODER.encode(
        {
            "schema": SCHEMA,
            "seq": r.seq,
            "time": when,
            "kind": r.kind,
            "event_id": r.event_id,
            "network": r.network,
            "room": r.room,
            "sender": r.sender,
            "dest_network": r.dest_network,
            "dest_room": r.dest_room,
            "action": r.action,
            "rule": r.rule,
            "hash": row.hash.hex(),
        }
    )
    body = r.body if not is_encrypted(r.body) else _ENCODER.encode(store.body(r))
    return Shipped(r.kind, r.seq, when, r.action, f'{meta[:-1]},"body":{body}}}')


def as_head(head: dict[str, Any], line: str) -> Shipped:
    when = str(head.get("at", ""))
    text = _ENCODER.encode({"schema": SCHEMA, "kind": "head", **head, "line": line})
    return Shipped("head", None, when, None, text)


REUSE_SECONDS = 1.0
"""How long a batch read for one sink is handed as is to another at the same cursor."""
RECENT_BATCHES = 8


class Reader:
    """Reads batches for the sinks; every method runs in a worker thread.

    One reader serves every sink: sinks that keep up stand at the same cursors, and
    reading and encoding the same records once per sink would double the sinks' CPU,
    which competes with the relay's for the one interpreter. A batch read for one is
    handed to another asking from the same cursor within `REUSE_SECONDS` (records are
    immutable once committed; the tail it reports is at most that old)."""

    def __init__(self, location: Path | str, store: ArchiveStore) -> None:
        self._location = location
        self._store = store
        self._conn: Conn | None = None
        self._close: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._recent: OrderedDict[tuple[Cursor, int], tuple[float, Batch]] = OrderedDict()
        self.reads = 0
        """Batches of records read from the database (fewer than the sinks ship when
        they share)."""

    def _connection(self) -> Conn:
        """A read-only connection of the reader's own: it reads in the sinks' thread,
        never through the relay's commit queue."""
        if self._conn is None:
            if is_url(self._location):
                from imbridge.engines.postgres import connect  # noqa: PLC0415 - only when configured

                pg = connect(str(self._location))
                self._conn, self._close = pg, pg.raw.close
            else:
                conn = sqlite3.connect(
                    f"file:{self._location}?mode=ro", uri=True, check_same_thread=False,
                    isolation_level=None,
                )  # fmt: skip
                conn.execute("PRAGMA busy_timeout=5000")
                self._conn, self._close = conn, conn.close
        return self._conn

    def next_batch(self, cursor: Cursor, limit: int) -> Batch:
        with self._lock:
            key = (cursor, limit)
            now = time.monotonic()
            hit = self._recent.get(key)
            if hit is not None and now - hit[0] < REUSE_SECONDS:
                return hit[1]
            batch = self._read(cursor, limit)
            if batch.records:
                self.reads += 1
                self._recent[key] = (now, batch)
                while len(self._recent) > RECENT_BATCHES:
                    self._recent.popitem(last=False)
            return batch

    def _read(self, cursor: Cursor, limit: int) -> Batch:
        conn = self._connection()
        conn.execute(snapshot(dialect_of(conn)))  # the tail and the rows agree
        try:
            row = conn.execute("SELECT seq FROM archive_chain WHERE id = 1").fetchone()
            tail = int(row[0]) if row else 0
            rows = list(
                self._store.rows(conn, "WHERE seq > ? ORDER BY seq LIMIT ?", (cursor.seq, limit))
            )
        finally:
            conn.execute("COMMIT")
        records = [as_record(self._store, r) for r in rows]
        seq = rows[-1].record.seq if rows else cursor.seq
        oldest = rows[0].record.ts_us if rows else None
        heads, offset = self._heads(cursor.heads_offset, seq, caught_up=seq >= tail)
        return Batch(records + heads, Cursor(seq, offset), tail, oldest)

    def _heads(self, offset: int, upto: int, *, caught_up: bool) -> tuple[list[Shipped], int]:
        """Head lines after `offset` whose records are shipped with this batch; a head
        file that shrank was replaced (a new key, a new file): read from its start."""
        path = self._store.head_file
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                if size < offset:
                    offset = 0
                f.seek(offset)
                data = f.read(1 << 20)
        except FileNotFoundError:
            return [], offset
        out: list[Shipped] = []
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break  # being written: next time
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                head = json.loads(line)
            except ValueError:
                head = None
            seq = head.get("seq") if isinstance(head, dict) else None
            if isinstance(seq, int) and seq > upto and not caught_up:
                break  # its records are not shipped yet
            offset += len(raw)
            if not isinstance(head, dict):
                continue
            out.append(as_head(head, line))
        return out, offset

    def close(self) -> None:
        with self._lock:
            self._recent.clear()
            if self._conn is not None:
                self._close()
                self._conn = None
