"""A message in its context: the records around it in its room, each with what the
policy decided for each destination, whether it was flagged, and its attachments.

Edits, deletions and reactions are shown as such, pointing at the message they change;
what each reader gets is plain text (never a record's formatted body), so nothing a
sender wrote can become markup in a reviewer's browser.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.search import Outcome, outcomes_of
from imbridge.archive.store import ArchiveStore, Row
from imbridge.db import Conn

AROUND = 15


@dataclass(slots=True)
class Entry:
    seq: int
    time: datetime
    event_id: str
    kind: str
    type: str
    sender: str
    sender_name: str
    text: str
    target: str | None
    outcomes: tuple[Outcome, ...]
    flags: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    focus: bool = False

    @property
    def marks(self) -> list[str]:
        """How the policy treated it: denied, redacted, ignored, flagged."""
        named = {"deny": "denied", "redact": "redacted", "ignored": "ignored"}
        out = sorted({named[o.action] for o in self.outcomes if o.action in named})
        return [*out, *(["flagged"] if self.flags else [])]


@dataclass(slots=True)
class Conversation:
    network: str
    room: str
    entries: list[Entry]


def _entry(conn: Conn, store: ArchiveStore, row: Row) -> Entry:
    r = row.record
    try:
        body = store.body(r)
    except ArchiveKeyError:
        body = {"text": "(encrypted: the console needs archive.encryption_key_file)"}
    origin = body.get("origin") or {}
    kind = str(body.get("type", r.kind))
    text = str(body.get("text") or body.get("reason") or body.get("status") or "")
    if kind == "reaction":
        text = ("took back " if body.get("removed") else "reacted ") + str(body.get("key", ""))
    return Entry(
        seq=r.seq,
        time=datetime.fromtimestamp(r.ts_us / 1_000_000, UTC),
        event_id=r.event_id or "",
        kind=r.kind,
        type=kind if r.kind == "event" else "notice",
        sender=r.sender or "",
        sender_name=str(origin.get("name") or r.sender or ""),
        text=text,
        target=body.get("target"),
        outcomes=outcomes_of(conn, r.event_id or ""),
    )


def find(conn: Conn, event_id: str) -> Row | None:
    raw = conn.execute(
        "SELECT seq FROM archive_records WHERE event_id = ? AND kind IN ('event', 'notice') "
        "ORDER BY seq LIMIT 1",
        (event_id,),
    ).fetchone()
    if raw is None:
        return None
    return next(ArchiveStore.rows(conn, "WHERE seq = ?", (int(raw[0]),)), None)


def around(
    conn: Conn, store: ArchiveStore, event_id: str, count: int = AROUND
) -> Conversation | None:
    """The message and up to `count` records before and after it in its room."""
    focus = find(conn, event_id)
    if focus is None:
        return None
    f = focus.record
    where = "WHERE network = ? AND room = ? AND kind IN ('event', 'notice')"
    before = list(
        store.rows(
            conn,
            f"{where} AND seq < ? ORDER BY seq DESC LIMIT ?",
            (f.network, f.room, f.seq, count),
        )
    )
    after = list(
        store.rows(
            conn, f"{where} AND seq > ? ORDER BY seq LIMIT ?", (f.network, f.room, f.seq, count)
        )
    )
    rows = [*reversed(before), focus, *after]
    entries = [_entry(conn, store, row) for row in rows]
    by_id: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_id[e.event_id].append(e)
        e.focus = e.seq == f.seq
    for row in store.rows_of(conn, list(by_id), ("flag", "file")):
        r = row.record
        for e in by_id[r.event_id or ""]:
            if r.kind == "flag":
                e.flags.append(r.rule or "manual")
            else:
                try:
                    e.files.append({"seq": r.seq, **store.body(r)})
                except ArchiveKeyError:
                    e.files.append({"seq": r.seq, "status": "encrypted"})
    return Conversation(f.network or "", f.room or "", entries)
