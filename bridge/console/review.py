"""The review queue: flagged events and what reviewers made of them, as chained records.

A `flag` record names an event the policy flagged (written by the relay path, action
`policy`, the rules in its body) or a reviewer flagged by hand (action `manual`). A
`review` record is one reviewer's verdict on a flagged event: `reviewed`, `escalated` or
`false_positive`, with a comment (encrypted like message content when the archive has a
key: a comment may quote the message). The queue is read from these records through the
archive's index on record kind, so its state is the chain's own: nothing beside it to
drift or to be edited unnoticed. An event stays in the queue until its latest verdict is
`reviewed` or `false_positive`; an escalated one stays, marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imbridge.archive.actor import Actor
from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.store import ArchiveStore
from imbridge.db import Conn

VERDICTS = ("reviewed", "escalated", "false_positive")
CLOSED = frozenset({"reviewed", "false_positive"})


class ReviewError(ValueError):
    """A refused review action, said to the user as is."""


@dataclass(slots=True)
class Verdict:
    state: str
    by: str
    time: datetime
    comment: str


@dataclass(slots=True)
class QueueItem:
    event_id: str
    event_seq: int | None
    flagged: datetime
    network: str
    room: str
    sender: str
    rules: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.verdicts[-1].state if self.verdicts else "open"

    @property
    def open(self) -> bool:
        return self.state not in CLOSED


def _time(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC)


def queue(conn: Conn, store: ArchiveStore) -> list[QueueItem]:
    """Every flagged event still in the archive, oldest flag first, with its verdicts."""
    found: dict[str, QueueItem] = {}
    for row in store.rows(conn, "WHERE kind = 'flag' ORDER BY seq"):
        r = row.record
        eid = r.event_id or ""
        item = found.get(eid)
        if item is None:
            item = found[eid] = QueueItem(
                event_id=eid,
                event_seq=None,
                flagged=_time(r.ts_us),
                network=r.network or "",
                room=r.room or "",
                sender=r.sender or "",
            )
        body = store.body(r)
        rules = body.get("rules") or []
        if r.action == "manual":
            rules = [f"manual ({Actor.from_json(body.get('by') or {}).label()})"]
        item.rules += [str(x) for x in rules if str(x) not in item.rules]
    for row in store.rows(conn, "WHERE kind = 'review' ORDER BY seq"):
        r = row.record
        target = found.get(r.event_id or "")
        if target is None:
            continue
        try:
            said: dict[str, Any] = store.body(r)
        except ArchiveKeyError:
            said = {"comment": "(encrypted)"}
        target.verdicts.append(
            Verdict(r.action or "", r.sender or "", _time(r.ts_us), str(said.get("comment", "")))
        )
    for row in store.rows_of(conn, list(found), ("event", "notice")):
        found[row.record.event_id or ""].event_seq = row.record.seq
    return list(found.values())


def _event_row(conn: Conn, event_id: str) -> tuple[str, str, str]:
    row = conn.execute(
        "SELECT network, room, sender FROM archive_records "
        "WHERE event_id = ? AND kind IN ('event', 'notice') ORDER BY seq LIMIT 1",
        (event_id,),
    ).fetchone()
    if row is None:
        raise ReviewError("no such message in the archive (purged, or never recorded)")
    return str(row[0]), str(row[1]), str(row[2])


def flag(conn: Conn, store: ArchiveStore, actor: Actor, event_id: str) -> int:
    """A reviewer puts a message in the queue by hand."""
    network, room, sender = _event_row(conn, event_id)
    return store.append(
        conn,
        [
            {
                "kind": "flag",
                "action": "manual",
                "event_id": event_id,
                "network": network,
                "room": room,
                "sender": sender,
                "rule": "manual",
                "body": {"rules": [], "by": actor.as_json()},
            }
        ],
    ).seq


def review(
    conn: Conn,
    store: ArchiveStore,
    actor: Actor,
    event_id: str,
    *,
    verdict: str,
    comment: str,
) -> int:
    if verdict not in VERDICTS:
        raise ReviewError(f"unknown verdict {verdict!r}: use {', '.join(VERDICTS)}")
    if not conn.execute(
        "SELECT 1 FROM archive_records WHERE kind = 'flag' AND event_id = ?", (event_id,)
    ).fetchone():
        raise ReviewError("that message is not in the review queue")
    network, room, _ = _event_row(conn, event_id)
    return store.append(
        conn,
        [
            {
                "kind": "review",
                "action": verdict,
                "event_id": event_id,
                "network": network,
                "room": room,
                "sender": actor.principal,
                "body": {"comment": comment, "by": actor.as_json()},
            }
        ],
    ).seq
