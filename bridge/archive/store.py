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
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from imbridge import codec
from imbridge.archive import Delivery, fulltext
from imbridge.archive.chain import (
    COLUMNS,
    GENESIS,
    Checkpoint,
    Head,
    Problem,
    Record,
    Verifier,
    link,
    purges_of,
    values_of,
)
from imbridge.archive.crypto import ArchiveKeyError, Cipher, is_encrypted
from imbridge.archive.filequeue import queue_attachments
from imbridge.archive.heads import (
    HEAD_FILE,
    KEY_FILE,
    HeadLines,
    Signer,
    append_line,
    head_path,
    parse_private,
    read_heads,
)
from imbridge.archive.symbols import spell_symbols
from imbridge.config.schema import Archive
from imbridge.db import Conn
from imbridge.dialect import POSTGRESQL, SQLITE, Step, ddl_for, dialect_of, serialize
from imbridge.events import Event, EventId, Message, RemoteId
from imbridge.policy import Decision, Destination, texts_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = structlog.get_logger("imbridge.archive")

_V1_RECORDS = """
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
"""
_V1_REST = """
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
"""

ARCHIVE_MIGRATIONS: tuple[Step, ...] = (
    {
        SQLITE: _V1_RECORDS + fulltext.SQLITE_TABLE + _V1_REST,
        POSTGRESQL: ddl_for(_V1_RECORDS + _V1_REST) + fulltext.POSTGRESQL_TABLE,
    },
    # v2: terms wait here and reach the full-text index in batches (`index_pending`):
    # an FTS5 insert alone in its transaction costs more than the rest of the relay
    # path, a batch of them a few microseconds a row.
    """
    CREATE TABLE archive_fts_pending (
        seq   INTEGER PRIMARY KEY,
        terms TEXT NOT NULL
    );
    """,
    # v3: attachment bytes (`archive.capture`): what is still to fetch, by the event
    # record naming it (no URL or name in clear here), and which stored file each
    # `file` record refers to, so a purge can tell which files nothing keeps any more.
    """
    CREATE TABLE archive_file_queue (
        event_seq     INTEGER NOT NULL,
        idx           INTEGER NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        not_before_us INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (event_seq, idx)
    ) WITHOUT ROWID;
    CREATE TABLE archive_file_refs (
        seq     INTEGER PRIMARY KEY,
        file_id TEXT NOT NULL
    );
    CREATE INDEX archive_file_refs_id ON archive_file_refs (file_id);
    """,
    # v4: the few records looked up by kind (purges, configs, holds, access) are found
    # without scanning years of events: the daemon reads them at start, at each reload
    # and after each purge, `archive audit` lists them.
    """
    CREATE INDEX archive_kind ON archive_records (kind, seq);
    """,
)

CONTENT_KINDS = frozenset({"event", "decision", "access", "file", "notice", "review"})
"""Kinds whose body holds message content (an access's query may quote it, a file record
names an attachment, a reviewer's comment may quote the message), encrypted when a key is
configured."""

_SELECT = "SELECT " + ", ".join(COLUMNS) + ", hash FROM archive_records"  # noqa: S608 - fixed names


def now_us() -> int:
    return time.time_ns() // 1000


_BODY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _dumps(value: Any) -> str:
    return _BODY_ENCODER.encode(value)


ROWS_PER_STATEMENT = 16
"""Up to this many rows go in one INSERT: an event's record and its decisions are one
statement, not one each (on PostgreSQL each statement costs the client more than the
server's work for a row); more (a bulk import) go through `executemany`."""


def _insert(conn: Conn, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Inserts `rows` into `table` (a fixed name, with its column list if any)."""
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    if len(rows) > ROWS_PER_STATEMENT:
        conn.executemany(f"INSERT INTO {table} VALUES {one}", rows)  # noqa: S608 - fixed names
    else:
        values = ", ".join([one] * len(rows))
        conn.execute(f"INSERT INTO {table} VALUES {values}", [v for r in rows for v in r])  # noqa: S608 - fixed names


def bound(record: Record) -> tuple[Any, ...]:
    """The metadata a record's ciphertext is bound to (all columns but seq, time, body)."""
    return values_of(record)[2:-1]


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
        self.key_file = state_dir / KEY_FILE
        self._signer: Signer | None = None
        key = settings.encryption_key
        self.cipher = Cipher(key.get_secret_value()) if key is not None else None
        self.clock = clock
        self._written: Head | None = None
        self._known: tuple[Conn, int, Head, int] | None = None
        """The head and newest time this store last wrote, on which connection, in which
        group commit (`PgConn.batch_epoch`): see `_tail_and_newest`."""

    # -- appending ----------------------------------------------------------------------

    def tail(self, conn: Conn) -> Head:
        """The chain's head, kept in its own row: the newest record may have been purged,
        and its sequence number must never be reused."""
        row = conn.execute("SELECT seq, hash FROM archive_chain WHERE id = 1").fetchone()
        return Head(0, GENESIS) if row is None else Head(int(row[0]), bytes(row[1]))

    def append(self, conn: Conn, records: Sequence[dict[str, Any]]) -> Head:
        """Chains and inserts records given as column values (without seq and hash);
        `body` is a JSON-able value, `terms` the text to index (event records only)."""
        serialize(conn)  # one writer of the chain at a time, across instances
        head, newest = self._tail_and_newest(conn)
        seq, prev = head.seq, head.hash
        rows: list[tuple[Any, ...]] = []
        fts: list[tuple[int, str]] = []
        # Never earlier than the newest record, whatever the clock did: `verify` relies
        # on record times never decreasing to check what a purge could delete.
        ts = max(self.clock(), newest)
        for values in records:
            seq += 1
            body = _dumps(values["body"])
            kind = values["kind"]
            get = values.get
            meta = (
                kind,
                get("event_id"),
                get("network"),
                get("room"),
                get("sender"),
                get("dest_network"),
                get("dest_room"),
                get("action"),
                get("rule"),
            )
            if self.cipher is not None and kind in CONTENT_KINDS:
                body = self.cipher.encrypt(body, seq, bind=meta)
            row = (seq, ts, *meta, body)
            prev = link(prev, row)  # the tuple is in `COLUMNS` order (a test checks it)
            rows.append((*row, prev))
            terms = values.get("terms")
            if terms:
                fts.append((seq, self._terms(terms)))
        _insert(conn, "archive_records", rows)
        if fts:
            _insert(conn, "archive_fts_pending (seq, terms)", fts)
        conn.execute(
            "INSERT INTO archive_chain VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (seq, prev),
        )
        epoch = getattr(conn, "batch_epoch", None)
        self._known = None if epoch is None else (conn, epoch, Head(seq, prev), ts)
        return Head(seq, prev)

    def _tail_and_newest(self, conn: Conn) -> tuple[Head, int]:
        """`tail` and `newest_ts` in one statement: on PostgreSQL each is a round trip
        the relay path waits for, once per event. Not even that after this store's own
        append in the same group commit: the chain's row stays locked by that append
        until the commit, so no one else can have moved the head since, and a rollback
        to a savepoint changes the connection's `batch_epoch`, which forgets it."""
        known = self._known
        epoch = getattr(conn, "batch_epoch", None)
        if known is not None and epoch is not None and known[0] is conn and known[1] == epoch:
            return known[2], known[3]
        seq, digest, newest = conn.execute(
            "SELECT (SELECT seq FROM archive_chain WHERE id = 1),"
            " (SELECT hash FROM archive_chain WHERE id = 1),"
            " (SELECT max(ts_us) FROM archive_records)"
        ).fetchone()
        head = Head(0, GENESIS) if seq is None else Head(int(seq), bytes(digest))
        return head, 0 if newest is None else int(newest)

    @staticmethod
    def newest_ts(conn: Conn) -> int:
        row = conn.execute("SELECT max(ts_us) FROM archive_records").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def index_pending(self, conn: Conn) -> int:
        """Moves waiting terms into the full-text index in one go; returns how many.
        The daemon calls it every second and searches call it first, so a search
        always sees every record."""
        return int(fulltext.index_pending(conn, dialect_of(conn)))

    def _terms(self, text: str) -> str:
        text = spell_symbols(text)
        return self.cipher.terms(text) if self.cipher is not None else text

    def record_event(
        self,
        conn: Conn,
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
            if d.hooks:
                body["hooks"] = [{"hook": h, "action": a, "reason": r} for h, a, r in d.hooks]
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
        flags = {name: None for _, d in decisions for name in d.flags}
        if flags:  # the review console's queue: one record, in this same commit
            records.append(
                {
                    **common,
                    "kind": "flag",
                    "action": "policy",
                    "rule": next(iter(flags)),
                    "body": {"rules": list(flags)},
                }
            )
        head = self.append(conn, records)
        if isinstance(event, Message) and event.attachments and self.settings.attachments.enabled:
            queue_attachments(conn, head.seq - len(records) + 1, len(event.attachments))

    def record_delivery(
        self,
        conn: Conn,
        event_id: EventId,
        dest: Destination,
        *,
        remote_id: RemoteId | None,
        error: str | None,
    ) -> None:
        self.record_deliveries(conn, [Delivery(event_id, dest, remote_id, error)])

    def record_deliveries(self, conn: Conn, done: Sequence[Delivery]) -> None:
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

    def record_ignored(self, conn: Conn, event: Event, *, rule: str, reason: str) -> None:
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
        conn: Conn,
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
            text = self.cipher.decrypt(text, record.seq, bind=bound(record))
        value = json.loads(text)
        return value if isinstance(value, dict) else {"value": value}

    @staticmethod
    def rows(conn: Conn, where: str = "", params: Sequence[Any] = ()) -> Iterator[Row]:
        cur = conn.execute(f"{_SELECT} {where}", params)
        while batch := cur.fetchmany(2048):
            for raw in batch:
                yield Row.of(raw)
        cur.close()  # a server-side cursor holds its portal until closed (`streamed`)

    @classmethod
    def rows_of(cls, conn: Conn, event_ids: Sequence[str], kinds: Collection[str]) -> Iterator[Row]:
        """The records of `kinds` about these events, in chain order. Looked up by event
        id alone, the kinds checked here: given `kind IN (...)` too, SQLite's planner
        (without statistics) walks the `(kind, seq)` index over every record of those
        kinds in the archive instead (146 s against 15 s to export 1 000 000 records,
        138 ms against 0.1 ms for the review queue's page of 50)."""
        if not event_ids:
            return
        marks = ", ".join("?" * len(event_ids))
        for row in cls.rows(conn, f"WHERE event_id IN ({marks}) ORDER BY seq", event_ids):
            if row.record.kind in kinds:
                yield row

    def purge_bodies(self, conn: Conn) -> list[dict[str, Any]]:
        return [
            json.loads(r[0])
            for r in conn.execute(
                "SELECT body FROM archive_records WHERE kind = 'purge' ORDER BY seq"
            )
        ]

    # -- head file ----------------------------------------------------------------------

    def signer(self, *, create: bool = False) -> Signer | None:
        """The head-signing key: `archive.signing_key_file`, else the one in state_dir
        (created on the first checkpoint when `create`)."""
        if self._signer is None:
            given = self.settings.signing_key
            if given is not None:
                self._signer = Signer(
                    parse_private(given.get_secret_value().encode(), "archive.signing_key_file")
                )
            else:
                self._signer = Signer.load(self.key_file, create=create)
        return self._signer

    def checkpoint(self, conn: Conn, *, force: bool = False) -> Head:
        """Appends the chain head, signed, to the head file (and the log), unless it is
        the one written last. Runs in the database thread: the file write never blocks
        the loop. Its time is never earlier than the newest record's."""
        head = self.tail(conn)
        if not force and head == self._written:
            return head
        signer = self.signer(create=True)
        if signer is None:  # pragma: no cover - create=True makes one
            raise AssertionError("no signing key")
        at = max(self.clock(), self.newest_ts(conn))
        append_line(self.head_file, signer.line(head, at))
        self._written = head
        if self.settings.log_checkpoints:
            log.info("archive_checkpoint", seq=head.seq, hash=head.hash.hex())
        return head

    def read_heads(
        self, path: Path | None = None, public: Ed25519PublicKey | None = None
    ) -> HeadLines | None:
        """The local head file (or an external copy at `path`), signatures checked
        against `public` (default: the signing key's); None when the file is absent."""
        if public is None:
            signer = self.signer()
            public = signer.public if signer is not None else None
        if path is None:
            return read_heads(self.head_file, public)
        return read_heads(path, public, external=True)

    def _witnesses(
        self, tail: Head, external: Sequence[Path], public: Ed25519PublicKey | None
    ) -> list[Checkpoint] | Problem:
        """Every head the head file and the external copies hold, or what is wrong
        with one of them."""
        checkpoints: list[Checkpoint] = []
        for path in (None, *external):
            found = self.read_heads(path, public)
            name = self.head_file if path is None else path
            if found is not None and found.problem is not None:
                return found.problem
            if found is None or not found.checkpoints:
                if path is not None or tail.seq > 0:
                    return Problem(0, f"head file {name} is missing or empty")
                continue
            if path is None and found.signed == 0 and self.signer() is not None:
                return Problem(
                    0, f"head file {name} holds no signed head although heads are signed: replaced"
                )
            checkpoints += found.checkpoints
        # The chain table's head is one more checkpoint, inside the database.
        checkpoints.append(Checkpoint(tail.seq, tail.hash, "the chain table"))
        return checkpoints

    def verify(
        self,
        conn: Conn,
        *,
        external: Sequence[Path] = (),
        public: Ed25519PublicKey | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> tuple[Problem | None, int]:
        """Walks the whole chain against the purge records, the head file and any
        external copies of it; returns the first problem (None: intact) and how many
        records were checked."""
        tail = self.tail(conn)
        checkpoints = self._witnesses(tail, external, public)
        if isinstance(checkpoints, Problem):
            return checkpoints, 0
        purges, problem = purges_of(
            conn.execute(
                "SELECT seq, ts_us, body FROM archive_records WHERE kind = 'purge' ORDER BY seq"
            )
        )
        if problem is not None:
            return problem, 0
        verifier = Verifier(
            purges,
            checkpoints,
            now_us=self.clock(),
            sealed=CONTENT_KINDS if self.cipher is not None else frozenset(),
            is_sealed=is_encrypted,
            opens=self.cipher.authentic if self.cipher is not None else None,
        )
        cur = conn.execute(f"{_SELECT} ORDER BY seq")
        feed = verifier.feed
        while batch := cur.fetchmany(4096):
            for raw in batch:
                if not feed(raw[:-1], raw[-1]):
                    return verifier.finish(), verifier.count
            if advance is not None:
                advance(len(batch))
        return verifier.finish(), verifier.count

    # -- notices ------------------------------------------------------------------------

    def notice_due(self, conn: Conn, network: str, room: str) -> str | None:
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

    def notice_posted(self, conn: Conn, network: str, room: str, text: str) -> None:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        conn.execute(
            "INSERT INTO archive_notices VALUES (?, ?, ?, ?) ON CONFLICT (network, room)"
            " DO UPDATE SET digest = excluded.digest, posted_us = excluded.posted_us",
            (network, room, digest, self.clock()),
        )


__all__ = ["ARCHIVE_MIGRATIONS", "HEAD_FILE", "ArchiveStore", "Row", "head_path"]
