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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from imbridge.archive import filequeue
from imbridge.archive.chain import PurgedRun
from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import LegalHold

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


def held_events(conn: sqlite3.Connection, holds: tuple[LegalHold, ...], cutoff_us: int) -> set[str]:
    if not holds:
        return set()
    out: set[str] = set()
    for event_id, network, room, sender, dnet, droom in conn.execute(
        "SELECT event_id, network, room, sender, dest_network, dest_room FROM archive_records "
        "WHERE ts_us < ? AND kind IN ('event', 'decision')",
        (cutoff_us,),
    ):
        if _held(holds, network, room, sender) or _held(holds, dnet, droom, None):
            out.add(event_id)
    return out


def purge(
    store: ArchiveStore,
    conn: sqlite3.Connection,
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
    held_ids = held_events(conn, settings.legal_hold, cutoff_us)
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
    conn.executemany("DELETE FROM archive_fts WHERE rowid = ?", ((s,) for s in doomed))
    conn.executemany("DELETE FROM archive_fts_pending WHERE seq = ?", ((s,) for s in doomed))
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
                    "holds": [h.name for h in settings.legal_hold],
                    "runs": [r.encode() for r in runs],
                },
            }
        ],
    )
    return PurgeResult(len(doomed), held, len(runs), cutoff, head.seq)
