"""Retention: records older than `archive.retention_days` are deleted, except what a
legal hold covers, and the purge itself is appended to the chain.

The purge record lists each run of deleted records with the hash of the run's last
record, which is what lets `verify` resume the chain after the gap; a gap no purge record
explains is reported as tampering. Purge records themselves are never purged: they are
small, and they are the proof that every gap was authorised; nor are `config` and `hold`
records, the proof of which settings and holds were in force.

A hold covers an event whose origin (network, room, sender) or one of whose destinations
(network, room) matches it; every record of that event (the event, its decisions, its
deliveries) is kept.

The purge also deletes what the relay keeps beside the archive (the quoting copies in
`messages`, the id map, failed outbox rows, long messages' full text) past the same
cutoff, except a held event's, in the same transaction; and it leaves no word behind:
the state database runs with `secure_delete` (deleted rows are zeroed), the full-text
index is optimised (FTS5 keeps deleted documents' words in its segments until they
merge; SQLite 3.40 has no FTS5 secure-delete), and the caller truncates the WAL after
the commit (`truncate_wal`), which otherwise still holds the pages as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from imbridge.archive import filequeue, fulltext
from imbridge.archive.chain import PurgedRun
from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import LegalHold
from imbridge.db import Conn
from imbridge.dialect import SQLITE, dialect_of, tables

DAY_US = 86_400 * 1_000_000
PERMANENT_KINDS = frozenset({"purge", "config", "hold"})
"""Never purged: the proof of every gap, and of which config and holds were in force."""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    deleted: int
    held: int
    runs: int
    cutoff: datetime
    seq: int | None
    """The purge record's sequence number; None when nothing was old enough."""


def _held(
    holds: Iterable[LegalHold], network: str | None, room: str | None, user: str | None
) -> bool:
    return (
        network is not None
        and room is not None
        and any(
            fnmatchcase(network, h.network)
            and fnmatchcase(room, h.room)
            and (user is None or fnmatchcase(user, h.user))
            and (user is not None or h.user == "*")
            for h in holds
        )
    )


def placed_holds(conn: Conn) -> tuple[LegalHold, ...]:
    """The holds placed in the review console: kept in the state database (see
    `imbridge.console.holds`), so a purge holds them the moment they are placed, in
    whichever process runs it."""
    if "console_holds" not in tables(conn):
        return ()
    return tuple(
        LegalHold(name=n, network=net, room=room, user=user)
        for n, net, room, user in conn.execute(
            'SELECT name, network, room, "user" FROM console_holds ORDER BY name'
        )
    )


def held_events(conn: Conn, holds: tuple[LegalHold, ...], cutoff_us: int) -> set[str]:
    if not holds:
        return set()
    out: set[str] = set()
    for event_id, network, room, sender, dnet, droom in conn.execute(
        "SELECT event_id, network, room, sender, dest_network, dest_room FROM archive_records "
        "WHERE ts_us < ? AND kind IN ('event', 'decision', 'notice')",
        (cutoff_us,),
    ):
        if _held(holds, network, room, sender) or _held(holds, dnet, droom, None):
            out.add(event_id)
    return out


def purge(
    store: ArchiveStore,
    conn: Conn,
    *,
    now_us: int | None = None,
    advance: Callable[[int], None] | None = None,
) -> PurgeResult:
    """Deletes what retention allows, in the caller's transaction, and records it.
    Settings are read here, at run time: a hold placed by a reload holds from then on.
    `advance(n)` is told of each record examined (a progress bar)."""
    settings = store.settings
    now = store.clock() if now_us is None else now_us
    cutoff_us = now - settings.retention_days * DAY_US
    cutoff = datetime.fromtimestamp(cutoff_us / 1_000_000, UTC)
    held_ids = held_events(conn, settings.legal_hold + placed_holds(conn), cutoff_us)
    purge_relay_state(conn, cutoff_us / 1_000_000, held_ids)
    last_old = conn.execute(
        "SELECT max(seq) FROM archive_records WHERE ts_us < ? "
        "AND kind NOT IN ('purge', 'config', 'hold')",
        (cutoff_us,),
    ).fetchone()[0]
    if last_old is None:
        return PurgeResult(0, 0, 0, cutoff, None)
    runs: list[PurgedRun] = []
    doomed: list[int] = []
    held = 0
    run_first: int | None = None
    run_last: tuple[int, bytes] | None = None
    for row in store.rows(conn, "WHERE seq <= ? ORDER BY seq", (last_old,)):
        r = row.record
        if advance is not None:
            advance(1)
        keep = r.kind in PERMANENT_KINDS or r.ts_us >= cutoff_us
        if not keep and r.event_id is not None and r.event_id in held_ids:
            keep = True
            held += 1
        if keep:
            if run_first is not None and run_last is not None:
                runs.append(PurgedRun(run_first, run_last[0], run_last[1]))
            run_first = run_last = None
            continue
        if run_first is None:
            run_first = r.seq
        run_last = (r.seq, row.hash)
        doomed.append(r.seq)
    if run_first is not None and run_last is not None:
        runs.append(PurgedRun(run_first, run_last[0], run_last[1]))
    if not doomed:
        return PurgeResult(0, held, 0, cutoff, None)
    fulltext.forget(conn, dialect_of(conn), doomed)
    conn.executemany("DELETE FROM archive_records WHERE seq = ?", ((s,) for s in doomed))
    filequeue.forget(conn, doomed)  # the files go in the sweep after commit (files.py)
    head = store.append(
        conn,
        [
            {
                "kind": "purge",
                "body": {
                    "cutoff": cutoff.isoformat(),
                    "cutoff_us": cutoff_us,  # exact, for `verify` to hold the runs to
                    "retention_days": settings.retention_days,
                    "deleted": len(doomed),
                    "held": held,
                    "holds": [h.name for h in settings.legal_hold + placed_holds(conn)],
                    "runs": [r.encode() for r in runs],
                },
            }
        ],
    )
    return PurgeResult(len(doomed), held, len(runs), cutoff, head.seq)


def purge_relay_state(conn: Conn, cutoff_s: float, held: set[str]) -> int:
    """Deletes the relay's own copies older than `cutoff_s` (Unix seconds, the unit of
    those tables): quoting copies, id map rows, failed outbox rows (pending ones are
    still to be delivered). A held event keeps them. Returns how many rows went; an
    archive opened without the relay's tables (a copy for audit) has none to delete."""
    names = tables(conn)
    if not {"messages", "idmap", "outbox"} <= names:
        return 0
    deleted = 0
    rows = conn.execute("SELECT event_id FROM messages WHERE created < ?", (cutoff_s,)).fetchall()
    gone = [(e,) for (e,) in rows if e not in held]
    deleted += conn.executemany("DELETE FROM messages WHERE event_id = ?", gone).rowcount
    rows = conn.execute(
        "SELECT network, remote_id, event_id FROM idmap WHERE created < ?", (cutoff_s,)
    ).fetchall()
    keys = [(n, r) for n, r, e in rows if e not in held]
    deleted += conn.executemany(
        "DELETE FROM idmap WHERE network = ? AND remote_id = ?", keys
    ).rowcount
    rows = conn.execute(
        "SELECT seq, event_id FROM outbox WHERE state = 'failed' AND created < ?", (cutoff_s,)
    ).fetchall()
    seqs = [(s,) for s, e in rows if e not in held]
    deleted += conn.executemany("DELETE FROM outbox WHERE seq = ?", seqs).rowcount
    if "reactions" in names:  # what each reaction was, and who got the private-message answer
        rows = conn.execute(
            "SELECT event_id FROM reactions WHERE created < ?", (cutoff_s,)
        ).fetchall()
        gone = [(e,) for (e,) in rows if e not in held]
        deleted += conn.executemany("DELETE FROM reactions WHERE event_id = ?", gone).rowcount
        deleted += conn.execute(
            "DELETE FROM direct_replies WHERE replied < ?", (cutoff_s,)
        ).rowcount
    if "long_texts" in names:  # long messages' full text behind their links
        rows = conn.execute(
            "SELECT key, event_id FROM long_texts WHERE created < ?", (cutoff_s,)
        ).fetchall()
        texts = [(k,) for k, e in rows if e not in held]
        deleted += conn.executemany("DELETE FROM long_texts WHERE key = ?", texts).rowcount
    return deleted


def truncate_wal(conn: Conn) -> bool:
    """Copies the WAL into the database file and truncates it to zero bytes, so the page
    images of a purge's deleted rows leave the WAL too; run after the purge committed,
    outside a transaction. False when a reader kept it from finishing (the next purge,
    or SQLite's own checkpoints, finish the job). PostgreSQL has no such file of ours:
    its WAL is recycled by the server, and dead rows go at its next vacuum."""
    if dialect_of(conn) != SQLITE:
        return True
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy) == 0
