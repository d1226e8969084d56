"""Keyword search over the archive with SQLite FTS5.

The user's words are quoted one by one, so any input is a valid query (all words must
occur, in any order, case- and accent-insensitively) and none of FTS5's query syntax can
be injected. When the archive is encrypted the index holds HMAC tokens of the words, and
the query is turned into the same tokens: only the key holder can search. After a key
rotation each word is looked for under every key of the keyring (`("tA" OR "tB")`), so
records indexed before and after the rotation are found alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imbridge.archive import fulltext
from imbridge.archive.crypto import ArchiveKeyError, is_encrypted, words
from imbridge.archive.fulltext import Terms
from imbridge.archive.store import ArchiveStore, Row
from imbridge.archive.symbols import spell_symbols
from imbridge.db import Conn
from imbridge.dialect import dialect_of, glob, glob_param

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    text: str = ""
    network: str | None = None
    room: str | None = None
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to a searched event at one destination."""

    kind: str  # decision | delivery
    dest_network: str | None
    dest_room: str | None
    action: str | None
    rule: str | None

    def label(self) -> str:
        rule = f" ({self.rule})" if self.rule else ""
        if self.dest_network is None:  # `ignored`: one decision for the event, no destination
            return f"{self.action}{rule}"
        return f"{self.dest_network}:{self.dest_room} {self.action}{rule}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    seq: int
    time: datetime
    event_id: str
    network: str
    room: str
    sender: str
    sender_name: str
    type: str
    text: str
    outcomes: tuple[Outcome, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "event_id": self.event_id,
            "network": self.network,
            "room": self.room,
            "sender": self.sender,
            "sender_name": self.sender_name,
            "type": self.type,
            "text": self.text,
            "outcomes": [
                {
                    "kind": o.kind,
                    "dest_network": o.dest_network,
                    "dest_room": o.dest_room,
                    "action": o.action,
                    "rule": o.rule,
                }
                for o in self.outcomes
            ],
        }


def _latest_is_encrypted(conn: Conn) -> bool:
    row = conn.execute(
        "SELECT body FROM archive_records WHERE kind = 'event' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return row is not None and is_encrypted(row[0])


def match_terms(conn: Conn, text: str, store: ArchiveStore) -> Terms | None:
    """What a user's words must match (`fulltext.Terms`); None for no words (match all)."""
    found = words(spell_symbols(text))
    if not found:
        return None
    if store.cipher is None and _latest_is_encrypted(conn):
        raise ArchiveKeyError("the archive is encrypted: search needs archive.encryption_key_file")
    if store.cipher is not None:
        # A record is indexed under the key current when it was written: after a
        # rotation a word may be under any key of the keyring.
        return [store.cipher.tokens(w) for w in found]
    return [(w,) for w in found]


def _filter(dialect: str, column: str, value: str, clauses: list[str], params: list[Any]) -> None:
    if GLOB_CHARS & set(value):
        clauses.append(glob(dialect, column))
        params.append(glob_param(dialect, value))
    else:
        clauses.append(f"{column} = ?")
        params.append(value)


def _us(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


def filters(query: Query, dialect: str, prefix: str = "r.") -> tuple[list[str], list[Any]]:
    """SQL conditions (on table alias `prefix`) and their parameters for a query's
    filters; only event and notice records."""
    clauses = [f"{prefix}kind IN ('event', 'notice')"]  # notices: the bridge's own words
    params: list[Any] = []
    for column, value in (("network", query.network), ("room", query.room), ("sender", query.user)):
        if value:
            _filter(dialect, prefix + column, value, clauses, params)
    if query.since is not None:
        clauses.append(f"{prefix}ts_us >= ?")
        params.append(_us(query.since))
    if query.until is not None:
        clauses.append(f"{prefix}ts_us < ?")
        params.append(_us(query.until))
    return clauses, params


def search(
    conn: Conn,
    store: ArchiveStore,
    query: Query,
    *,
    advance: Callable[[int], None] | None = None,
) -> list[Hit]:
    """Newest first, at most `query.limit` hits; `advance(1)` per hit read (progress)."""
    dialect = dialect_of(conn)
    clauses, params = filters(query, dialect)
    cols = (
        "r.seq, r.ts_us, r.kind, r.event_id, r.network, r.room, r.sender, "
        "r.dest_network, r.dest_room, r.action, r.rule, r.body, r.hash"
    )
    terms = match_terms(conn, query.text, store)
    if terms is None:
        sql = (
            f"SELECT {cols} FROM archive_records r WHERE {' AND '.join(clauses)} "  # noqa: S608 - fixed clauses
            "ORDER BY r.seq DESC LIMIT ?"
        )
        args: list[Any] = [*params, query.limit]
    else:
        key, condition, expression = fulltext.match(dialect, terms)
        sql = (
            f"SELECT {cols} FROM archive_fts f JOIN archive_records r ON r.seq = {key} "  # noqa: S608 - fixed clauses
            f"WHERE {condition} AND {' AND '.join(clauses)} "
            f"ORDER BY {key} DESC LIMIT ?"
        )
        args = [expression, *params, query.limit]
    rows = [Row.of(raw) for raw in conn.execute(sql, args)]
    hits = []
    for row in rows:
        hits.append(hit_of(conn, store, row))
        if advance is not None:
            advance(1)
    return hits


def outcomes_of(conn: Conn, event_id: str) -> tuple[Outcome, ...]:
    return tuple(
        Outcome(kind=k, dest_network=n, dest_room=r, action=a, rule=rule)
        for k, n, r, a, rule in conn.execute(
            "SELECT kind, dest_network, dest_room, action, rule FROM archive_records "
            "WHERE event_id = ? AND kind IN ('decision', 'delivery') ORDER BY seq",
            (event_id,),
        )
    )


def hit_of(conn: Conn, store: ArchiveStore, row: Row) -> Hit:
    r = row.record
    body = store.body(r)
    origin = body.get("origin", {})
    text = body.get("text") or body.get("reason") or body.get("status") or ""
    if body.get("type") == "reaction":
        what = "took back" if body.get("removed") else "reacted"
        text = f"{what} {body.get('key', '')} to {body.get('target', '')}"
    names = [a.get("name") or a.get("url", "") for a in body.get("attachments", ())]
    if names:
        text = " ".join([text, *(f"[{n}]" for n in names)]).strip()
    return Hit(
        seq=r.seq,
        time=datetime.fromtimestamp(r.ts_us / 1_000_000, UTC),
        event_id=r.event_id or "",
        network=r.network or "",
        room=r.room or "",
        sender=r.sender or "",
        sender_name=str(origin.get("name", r.sender or "")),
        type=str(body.get("type", "")),
        text=str(text),
        outcomes=outcomes_of(conn, r.event_id or ""),
    )


def table(hits: Sequence[Hit], width: int = 60) -> str:
    """Hits as an aligned text table for a terminal."""
    head = ("SEQ", "TIME (UTC)", "NETWORK", "ROOM", "SENDER", "TEXT", "OUTCOMES")
    rows = [head]
    for h in hits:
        text = h.text.replace("\n", " ")
        if len(text) > width:
            text = text[: width - 1] + "…"
        outcome = "; ".join(o.label() for o in h.outcomes if o.kind == "decision")
        rows.append(
            (
                str(h.seq),
                h.time.strftime("%Y-%m-%d %H:%M:%S"),
                h.network,
                h.room,
                h.sender,
                text,
                outcome,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )
