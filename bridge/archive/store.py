"""Appends events, decisions and delivery outcomes to the archive, chained, and reads
them back.

Writes happen inside the relay's own transaction (the `Recorder` calls run within its
commit), so the archive holds exactly what committed. The chain's tail is read
from the table on every append rather than cached, so a rolled-back savepoint can never
leave a cached hash that the table does not hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from imbridge import codec
from imbridge.archive import Delivery
from imbridge.archive.chain import (
    COLUMNS,
    GENESIS,
    Head,
    Problem,
    Record,
    Verifier,
    link,
    runs_of,
)
from imbridge.archive.crypto import ArchiveKeyError, Cipher, is_encrypted
from imbridge.config.schema import Archive
from imbridge.events import Event, EventId, Message, RemoteId
from imbridge.policy import Decision, Destination, texts_of

log = structlog.get_logger("imbridge.archive")

ARCHIVE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE archive_records (
        seq          INTEGER PRIMARY KEY,
        ts_us        INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        event_id     TEXT,
        network      TEXT,
        room         TEXT,
        sender       TEXT,
        dest_network TEXT,
        dest_room    TEXT,
        action       TEXT,
        rule         TEXT,
        body         TEXT NOT NULL,
        hash         BLOB NOT NULL
    );
    CREATE INDEX archive_ts ON archive_records (ts_us);
    CREATE INDEX archive_event ON archive_records (event_id);
    CREATE VIRTUAL TABLE archive_fts USING fts5 (
        terms, tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TABLE archive_chain (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  INTEGER NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE TABLE archive_notices (
        network   TEXT NOT NULL,
        room      TEXT NOT NULL,
        digest    TEXT NOT NULL,
        posted_us INTEGER NOT NULL,
        PRIMARY KEY (network, room)
    ) WITHOUT ROWID;
    """,
    # v2: terms wait here and reach the full-text index in batches (`index_pending`):
    # an FTS5 insert alone in its transaction costs more than the rest of the relay
    # path, a batch of them a few microseconds a row.
    """
    CREATE TABLE archive_fts_pending (
        seq   INTEGER PRIMARY KEY,
        terms TEXT NOT NULL
    );
    """,
)

HEAD_FILE = "archive-heads.jsonl"
CONTENT_KINDS = frozenset({"event", "decision", "notice"})
"""Kinds whose body holds message content, encrypted when a key is configured."""

_SELECT = "SELECT " + ", ".join(COLUMNS) + ", hash FROM archive_records"  # noqa: S608 - fixed names


def head_path(settings: Archive, state_dir: Path) -> Path:
    if settings.head_file is None:
        return state_dir / HEAD_FILE
    return (
        settings.head_file if settings.head_file.is_absolute() else state_dir / settings.head_file
    )


def now_us() -> int:
    return time.time_ns() // 1000


_BODY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _dumps(value: Any) -> str:
    return _BODY_ENCODER.encode(value)


@dataclass(frozen=True, slots=True)
class Row:
    record: Record
    hash: bytes

    @classmethod
    def of(cls, raw: Sequence[Any]) -> Row:
        return cls(Record(**dict(zip(COLUMNS, raw[:-1], strict=True))), bytes(raw[-1]))


class ArchiveStore:
    """The `Recorder` the relay path calls, plus the archive's own maintenance:
    checkpoints to the head file, retention purges, room notices."""

    def __init__(
        self,
        settings: Archive,
        *,
        state_dir: Path,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.settings = settings
        self.head_file = head_path(settings, state_dir)
        key = settings.encryption_key
        self.cipher = Cipher(key.get_secret_value()) if key is not None else None
        self.clock = clock
        self._written: Head | None = None

    # -- appending ----------------------------------------------------------------------

    def tail(self, conn: sqlite3.Connection) -> Head:
        """The chain's head, kept in its own row: the newest record may have been purged,
        and its sequence number must never be reused."""
        row = conn.execute("SELECT seq, hash FROM archive_chain WHERE id = 1").fetchone()
        return Head(0, GENESIS) if row is None else Head(int(row[0]), bytes(row[1]))

    def append(self, conn: sqlite3.Connection, records: Sequence[dict[str, Any]]) -> Head:
        """Chains and inserts records given as column values (without seq and hash);
        `body` is a JSON-able value, `terms` the text to index (event records only)."""
        head = self.tail(conn)
        seq, prev = head.seq, head.hash
        rows: list[tuple[Any, ...]] = []
        fts: list[tuple[int, str]] = []
        ts = self.clock()
        for values in records:
            seq += 1
            body = _dumps(values["body"])
            kind = values["kind"]
            if self.cipher is not None and kind in CONTENT_KINDS:
                body = self.cipher.encrypt(body, seq)
            get = values.get
            row = (
                seq,
                ts,
                kind,
                get("event_id"),
                get("network"),
                get("room"),
                get("sender"),
                get("dest_network"),
                get("dest_room"),
                get("action"),
                get("rule"),
                body,
            )
            prev = link(prev, row)  # the tuple is in `COLUMNS` order (a test checks it)
            rows.append((*row, prev))
            terms = values.get("terms")
            if terms:
                fts.append((seq, self._terms(terms)))
        placeholders = ", ".join("?" * (len(COLUMNS) + 1))
        conn.executemany(f"INSERT INTO archive_records VALUES ({placeholders})", rows)  # noqa: S608 - fixed column list
        if fts:
            conn.executemany("INSERT INTO archive_fts_pending (seq, terms) VALUES (?, ?)", fts)
        conn.execute("INSERT OR REPLACE INTO archive_chain VALUES (1, ?, ?)", (seq, prev))
        return Head(seq, prev)

    def index_pending(self, conn: sqlite3.Connection) -> int:
        """Moves waiting terms into the full-text index in one go; returns how many.
        The daemon calls it every second and searches call it first, so a search
        always sees every record."""
        moved = conn.execute(
            "INSERT INTO archive_fts (rowid, terms) SELECT seq, terms FROM archive_fts_pending"
        ).rowcount
        if moved:
            conn.execute("DELETE FROM archive_fts_pending")
        return int(moved)

    def _terms(self, text: str) -> str:
        return self.cipher.terms(text) if self.cipher is not None else text

    def record_event(
        self,
        conn: sqlite3.Connection,
        event: Event,
        decisions: Sequence[tuple[Destination, Decision]],
    ) -> None:
        o = event.origin
        common = {"event_id": event.id, "network": o.network, "room": o.room, "sender": o.sender.id}
        records: list[dict[str, Any]] = [
            {
                **common,
                "kind": "event",
                "body": codec.to_dict(event),
                "terms": "\n".join(texts_of(event)),
            },
        ]
        for dest, d in decisions:
            body: dict[str, Any] = {"reason": d.reason, "notify_sender": d.notify_sender}
            if d.event is not None and d.event is not event:
                body["sent"] = codec.to_dict(d.event)
            if d.quoted is not None:
                body["quoted"] = d.quoted
            records.append(
                {
                    **common,
                    "kind": "decision",
                    "dest_network": dest.network,
                    "dest_room": dest.room,
                    "action": d.action.value,
                    "rule": d.rule,
                    "body": body,
                }
            )
        self.append(conn, records)

    def record_delivery(
        self,
        conn: sqlite3.Connection,
        event_id: EventId,
        dest: Destination,
        *,
        remote_id: RemoteId | None,
        error: str | None,
    ) -> None:
        self.record_deliveries(conn, [Delivery(event_id, dest, remote_id, error)])

    def record_deliveries(self, conn: sqlite3.Connection, done: Sequence[Delivery]) -> None:
        self.append(
            conn,
            [
                {
                    "kind": "delivery",
                    "event_id": d.event_id,
                    "dest_network": d.dest.network,
                    "dest_room": d.dest.room,
                    "action": "failed" if d.error else "delivered",
                    "body": {"remote_id": d.remote_id, "error": d.error},
                }
                for d in done
            ],
        )

    def record_ignored(
        self, conn: sqlite3.Connection, event: Event, *, rule: str, reason: str
    ) -> None:
        o = event.origin
        common = {"event_id": event.id, "network": o.network, "room": o.room, "sender": o.sender.id}
        self.append(
            conn,
            [
                {
                    **common,
                    "kind": "event",
                    "body": codec.to_dict(event),
                    "terms": "\n".join(texts_of(event)),
                },
                {
                    **common,
                    "kind": "decision",
                    "action": "ignored",
                    "rule": rule,
                    "body": {"reason": reason, "notify_sender": False},
                },
            ],
        )

    def record_notice(
        self,
        conn: sqlite3.Connection,
        notice: Message,
        *,
        purpose: str,
        about: EventId | None = None,
        rule: str | None = None,
    ) -> None:
        o = notice.origin
        self.append(
            conn,
            [
                {
                    "kind": "notice",
                    "event_id": notice.id,
                    "network": o.network,
                    "room": o.room,
                    "sender": o.sender.id,
                    "action": purpose,
                    "rule": rule,
                    "body": {**codec.to_dict(notice), "purpose": purpose, "about": about},
                    "terms": notice.text,
                }
            ],
        )

    # -- reading ------------------------------------------------------------------------

    def body(self, record: Record) -> dict[str, Any]:
        """A record's body as data, decrypted when it is encrypted (needs the key)."""
        text = record.body
        if is_encrypted(text):
            if self.cipher is None:
                raise ArchiveKeyError(
                    "the archive is encrypted: configure archive.encryption_key_file"
                )
            text = self.cipher.decrypt(text, record.seq)
        value = json.loads(text)
        return value if isinstance(value, dict) else {"value": value}

    @staticmethod
    def rows(
        conn: sqlite3.Connection, where: str = "", params: Sequence[Any] = ()
    ) -> Iterator[Row]:
        cur = conn.execute(f"{_SELECT} {where}", params)
        while batch := cur.fetchmany(2048):
            for raw in batch:
                yield Row.of(raw)

    def purge_bodies(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        return [
            json.loads(r[0])
            for r in conn.execute(
                "SELECT body FROM archive_records WHERE kind = 'purge' ORDER BY seq"
            )
        ]

    # -- head file ----------------------------------------------------------------------

    def checkpoint(self, conn: sqlite3.Connection, *, force: bool = False) -> Head:
        """Appends the chain head to the head file (and the log), unless it is the one
        written last. Runs in the database thread: the file write never blocks the loop."""
        head = self.tail(conn)
        if not force and head == self._written:
            return head
        line = _dumps(
            {
                "seq": head.seq,
                "hash": head.hash.hex(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        self.head_file.parent.mkdir(parents=True, exist_ok=True)
        with self.head_file.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._written = head
        if self.settings.log_checkpoints:
            log.info("archive_checkpoint", seq=head.seq, hash=head.hash.hex())
        return head

    def read_heads(self) -> tuple[list[Head], Problem | None]:
        """The checkpoints in the head file; a missing file is a problem once the
        archive has records (the daemon writes a head at start)."""
        heads: list[Head] = []
        try:
            lines = self.head_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return heads, None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                heads.append(Head(int(data["seq"]), bytes.fromhex(data["hash"])))
            except (ValueError, KeyError, TypeError):
                return heads, Problem(0, f"{self.head_file} line {n} is unreadable")
        return heads, None

    def verify(self, conn: sqlite3.Connection) -> tuple[Problem | None, int]:
        """Walks the whole chain against the purge records and the head file; returns
        the first problem (None: intact) and how many records were checked."""
        heads, problem = self.read_heads()
        if problem is not None:
            return problem, 0
        if not self.head_file.exists() and self.tail(conn).seq > 0:
            return Problem(0, f"head file {self.head_file} is missing"), 0
        try:
            runs = runs_of(self.purge_bodies(conn))
        except (ValueError, TypeError, KeyError) as exc:
            return Problem(0, f"a purge record is unreadable: {exc}"), 0
        # The chain table's head is one more checkpoint, inside the database.
        verifier = Verifier(runs, [*heads, self.tail(conn)])
        cur = conn.execute(f"{_SELECT} ORDER BY seq")
        while batch := cur.fetchmany(4096):
            for raw in batch:
                if not verifier.feed(raw[:-1], bytes(raw[-1])):
                    return verifier.finish(), verifier.count
        return verifier.finish(), verifier.count

    # -- notices ------------------------------------------------------------------------

    def notice_due(self, conn: sqlite3.Connection, network: str, room: str) -> str | None:
        """The notice to post in a room the bridge just joined: None when none is
        configured, or this room already got this exact text."""
        text = self.settings.notice
        if not text:
            return None
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        row = conn.execute(
            "SELECT digest FROM archive_notices WHERE network = ? AND room = ?", (network, room)
        ).fetchone()
        return None if row is not None and row[0] == digest else text

    def notice_posted(self, conn: sqlite3.Connection, network: str, room: str, text: str) -> None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        conn.execute(
            "INSERT OR REPLACE INTO archive_notices VALUES (?, ?, ?, ?)",
            (network, room, digest, self.clock()),
        )


__all__ = ["ARCHIVE_MIGRATIONS", "ArchiveStore", "Row", "runs_of"]
