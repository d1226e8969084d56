"""The attachment queue and the record-to-file references, in the state database.

What is still to fetch lives here, not in memory, so a restart resumes it; a row names
the event record and the attachment's index only, so nothing of a message (URL, file
name) is kept in clear beside an encrypted archive. Runs on a caller's connection, inside
its transaction: queuing happens in the relay's own commit and costs one insert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from imbridge.db import Conn


@dataclass(frozen=True, slots=True)
class Job:
    event_seq: int
    idx: int
    attempts: int


def queue_attachments(conn: Conn, event_seq: int, count: int) -> None:
    conn.executemany(
        "INSERT INTO archive_file_queue (event_seq, idx) VALUES (?, ?) ON CONFLICT DO NOTHING",
        ((event_seq, i) for i in range(count)),
    )


def due(conn: Conn, now_us: int, limit: int) -> list[Job]:
    return [
        Job(int(s), int(i), int(a))
        for s, i, a in conn.execute(
            "SELECT event_seq, idx, attempts FROM archive_file_queue "
            "WHERE not_before_us <= ? ORDER BY event_seq, idx LIMIT ?",
            (now_us, limit),
        )
    ]


def pending(conn: Conn) -> int:
    return int(conn.execute("SELECT count(*) FROM archive_file_queue").fetchone()[0])


def postpone(conn: Conn, job: Job, not_before_us: int) -> None:
    conn.execute(
        "UPDATE archive_file_queue SET attempts = ?, not_before_us = ? "
        "WHERE event_seq = ? AND idx = ?",
        (job.attempts + 1, not_before_us, job.event_seq, job.idx),
    )


def finish(conn: Conn, job: Job) -> None:
    conn.execute(
        "DELETE FROM archive_file_queue WHERE event_seq = ? AND idx = ?", (job.event_seq, job.idx)
    )


def add_ref(conn: Conn, seq: int, file_id: str) -> None:
    conn.execute("INSERT INTO archive_file_refs (seq, file_id) VALUES (?, ?)", (seq, file_id))


def file_ids(conn: Conn, seqs: Iterable[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for seq in seqs:
        row = conn.execute("SELECT file_id FROM archive_file_refs WHERE seq = ?", (seq,)).fetchone()
        if row is not None:
            out[seq] = str(row[0])
    return out


def referenced(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT DISTINCT file_id FROM archive_file_refs")}


def forget(conn: Conn, seqs: Iterable[int]) -> None:
    """Drops the references (and queued fetches) of purged records; the files themselves
    go in the sweep after the purge commits, when nothing else refers to them."""
    doomed = [(s,) for s in seqs]
    conn.executemany("DELETE FROM archive_file_refs WHERE seq = ?", doomed)
    conn.executemany("DELETE FROM archive_file_queue WHERE event_seq = ?", doomed)
