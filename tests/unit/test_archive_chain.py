"""Tamper evidence: `verify` must catch every single-record edit, deletion, reordering and
tail truncation of a generated 10 000-record archive, and still pass after a retention
purge under legal hold."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from imbridge.archive.chain import COLUMNS
from imbridge.archive.retention import DAY_US, purge
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.schema import Archive, LegalHold
from imbridge.db import Conn
from imbridge.events import EventId, Message, Origin, RemoteId, Sender
from imbridge.policy import Action, Decision, Destination
from imbridge.testing import sqlite_schema

N = 10_000
T0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
SAMPLES = 25  # tampered positions per kind, plus the first and the last record


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_schema(conn, ARCHIVE_MIGRATIONS)
    return conn


def message(i: int, room: str = "#ops", user: str = "alice") -> Message:
    return Message(
        id=EventId(f"ev{i}"),
        origin=Origin(network="corp-irc", room=room, sender=Sender(id=user, name=user)),
        text=f"message number {i} about the quarterly figures",
    )


def fill(store: ArchiveStore, conn: sqlite3.Connection, clock: Clock, count: int) -> None:
    """`count` records: events with a decision each, and a delivery for some, one minute
    apart, one transaction (like a busy daemon's group commits)."""
    dest = Destination("corp-xmpp", "ops@conf")
    conn.execute("BEGIN")
    i = 0
    while (left := count - store.tail(conn).seq) > 0:
        event = message(i, room="#legal" if i % 97 == 0 else "#ops")
        if left == 1:
            store.record_delivery(conn, event.id, dest, remote_id=None, error="gone")
            break
        allow = Decision(action=Action.ALLOW, rule="default", event=event)
        store.record_event(conn, event, [(dest, allow)])
        if i % 3 == 0 and left > 3:
            store.record_delivery(conn, event.id, dest, remote_id=RemoteId(f"r{i}"), error=None)
        clock.now += 60_000_000
        i += 1
    conn.execute("COMMIT")
    assert store.tail(conn).seq == count


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 000-record archive with its head checkpointed, built once and copied."""
    base = tmp_path_factory.mktemp("archive")
    clock = Clock()
    store = ArchiveStore(Archive(), state_dir=base, clock=clock)
    conn = connect(base / "state.db")
    fill(store, conn, clock, N)
    store.checkpoint(conn)
    conn.close()
    return base


@pytest.fixture
def fresh(archive: Path, tmp_path: Path) -> Iterator[tuple[ArchiveStore, sqlite3.Connection]]:
    src = sqlite3.connect(archive / "state.db")
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    src.backup(conn)
    src.close()
    for name in ("archive-heads.jsonl", "archive-signing.key"):
        (tmp_path / name).write_bytes((archive / name).read_bytes())
    yield ArchiveStore(Archive(), state_dir=tmp_path), conn
    conn.close()


def positions(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [1, N, *rng.sample(range(2, N), SAMPLES)]


def tampered(
    store: ArchiveStore, conn: sqlite3.Connection, change: Callable[[sqlite3.Connection], Any]
) -> str | None:
    """Applies `change`, verifies, undoes it; the problem found, as text."""
    conn.execute("BEGIN")
    try:
        change(conn)
        problem, _ = store.verify(conn)
    finally:
        conn.execute("ROLLBACK")
    return None if problem is None else str(problem)


def test_untouched_archive_verifies(fresh: tuple[ArchiveStore, sqlite3.Connection]) -> None:
    store, conn = fresh
    assert store.verify(conn) == (None, N)


def test_every_single_record_edit_is_detected(
    fresh: tuple[ArchiveStore, sqlite3.Connection],
) -> None:
    store, conn = fresh
    rng = random.Random(1)
    editable = [c for c in COLUMNS if c != "seq"] + ["hash"]
    for seq in positions(1):
        column = rng.choice(editable)
        value = {"ts_us": 1, "hash": b"\0" * 32}.get(column, "tampered")
        problem = tampered(
            store,
            conn,
            lambda c, col=column, v=value, s=seq: c.execute(  # type: ignore[misc]
                f"UPDATE archive_records SET {col} = ? WHERE seq = ?",  # noqa: S608
                (v, s),
            ),
        )
        assert problem is not None, (seq, column)
        assert problem.startswith((f"record {seq}:", f"record {seq + 1}:")), problem


def test_edit_with_recomputed_chain_is_caught_by_the_head_file(
    fresh: tuple[ArchiveStore, sqlite3.Connection],
) -> None:
    """An attacker who rewrites one record and recomputes every hash after it still
    cannot match the head written to the separate file."""
    from imbridge.archive.chain import GENESIS, link  # noqa: PLC0415

    store, conn = fresh

    def rewrite(c: sqlite3.Connection) -> None:
        c.execute("UPDATE archive_records SET body = '{}' WHERE seq = 5000")
        prev = GENESIS
        for row in list(store.rows(c, "ORDER BY seq")):
            prev = link(prev, row.record)
            c.execute("UPDATE archive_records SET hash = ? WHERE seq = ?", (prev, row.record.seq))

    problem = tampered(store, conn, rewrite)
    assert problem is not None
    assert "head file" in problem


def test_every_single_record_deletion_is_detected(
    fresh: tuple[ArchiveStore, sqlite3.Connection],
) -> None:
    store, conn = fresh
    for seq in positions(2):
        problem = tampered(
            store,
            conn,
            lambda c, s=seq: c.execute("DELETE FROM archive_records WHERE seq = ?", (s,)),  # type: ignore[misc]
        )
        assert problem is not None, seq
        assert problem.startswith(f"record {seq}:"), problem


def test_every_reordering_is_detected(fresh: tuple[ArchiveStore, sqlite3.Connection]) -> None:
    store, conn = fresh
    rng = random.Random(3)
    for seq in positions(3):
        other = rng.choice([s for s in range(1, N + 1) if s != seq])

        def swap(c: sqlite3.Connection, a: int = seq, b: int = other) -> None:
            c.execute("UPDATE archive_records SET seq = -1 WHERE seq = ?", (a,))
            c.execute("UPDATE archive_records SET seq = ? WHERE seq = ?", (a, b))
            c.execute("UPDATE archive_records SET seq = ? WHERE seq = -1", (b,))

        problem = tampered(store, conn, swap)
        assert problem is not None, (seq, other)
        assert problem.startswith(f"record {min(seq, other)}:"), problem


def test_every_tail_truncation_is_detected(fresh: tuple[ArchiveStore, sqlite3.Connection]) -> None:
    store, conn = fresh
    for keep in [0, 1, N - 1, *random.Random(4).sample(range(2, N - 1), SAMPLES)]:
        problem = tampered(
            store,
            conn,
            lambda c, k=keep: c.execute("DELETE FROM archive_records WHERE seq > ?", (k,)),  # type: ignore[misc]
        )
        assert problem is not None, keep
        assert "tail truncated" in problem


def test_missing_head_file_is_reported(fresh: tuple[ArchiveStore, sqlite3.Connection]) -> None:
    store, conn = fresh
    store.head_file.unlink()
    problem, _ = store.verify(conn)
    assert problem is not None
    assert "missing" in str(problem)


def test_purge_under_legal_hold_still_verifies_and_stays_tamper_evident(
    fresh: tuple[ArchiveStore, sqlite3.Connection],
) -> None:
    _, conn = fresh
    hold = LegalHold(name="case-42", room="#legal")
    settings = Archive(retention_days=3, legal_hold=(hold,))
    clock = Clock()
    store = ArchiveStore(settings, state_dir=fresh[0].head_file.parent, clock=clock)
    # The archive spans ~3 days (one event a minute): cut it at 2000 minutes, then at 3440.
    clock.now = T0 + 60_000_000 * 2000 + 3 * DAY_US
    conn.execute("BEGIN")
    result = purge(store, conn)
    conn.execute("COMMIT")
    assert result.deleted > 0
    assert result.held > 0
    assert result.runs > 1  # the held #legal records split the deleted span
    store.checkpoint(conn)
    kept_legal = conn.execute(
        "SELECT count(*) FROM archive_records WHERE room = '#legal' AND ts_us < ?",
        (clock.now - 3 * DAY_US,),
    ).fetchone()[0]
    assert kept_legal > 0
    problem, count = store.verify(conn)
    assert problem is None, problem
    assert count == N - result.deleted + 1
    # After the purge, a deletion next to a gap, or of a held record, is still caught.
    held_seq = conn.execute(
        "SELECT min(seq) FROM archive_records WHERE room = '#legal'"
    ).fetchone()[0]
    for seq in (held_seq, result.seq):
        problem_text = tampered(
            store,
            conn,
            lambda c, s=seq: c.execute("DELETE FROM archive_records WHERE seq = ?", (s,)),  # type: ignore[misc]
        )
        assert problem_text is not None, seq
    # A second purge later chains on the first.
    clock.now += DAY_US
    conn.execute("BEGIN")
    again = purge(store, conn)
    conn.execute("COMMIT")
    assert again.deleted > 0
    assert store.verify(conn)[0] is None


def test_decisions_and_deliveries_are_recorded(tmp_path: Path) -> None:
    clock = Clock()
    store = ArchiveStore(Archive(), state_dir=tmp_path, clock=clock)
    conn = connect(tmp_path / "s.db")
    event = message(1)
    decisions = [
        (
            Destination("corp-xmpp", "ops@c"),
            Decision(action=Action.ALLOW, rule="default", event=event),
        ),
        (
            Destination("public-matrix", "!r"),
            Decision(action=Action.DENY, rule="no-secrets", reason="matched rule 'no-secrets'"),
        ),
    ]
    store.record_event(conn, event, decisions)
    store.record_delivery(conn, event.id, decisions[0][0], remote_id=RemoteId("x1"), error=None)
    rows = list(store.rows(conn, "ORDER BY seq"))
    kinds = [(r.record.kind, r.record.dest_network, r.record.action, r.record.rule) for r in rows]
    assert kinds == [
        ("event", None, None, None),
        ("decision", "corp-xmpp", "allow", "default"),
        ("decision", "public-matrix", "deny", "no-secrets"),
        ("delivery", "corp-xmpp", "delivered", None),
    ]
    assert store.body(rows[0].record)["text"] == event.text
    assert store.body(rows[3].record)["remote_id"] == "x1"


def test_row_layout_matches_the_hashed_columns() -> None:
    assert COLUMNS == (
        "seq",
        "ts_us",
        "kind",
        "event_id",
        "network",
        "room",
        "sender",
        "dest_network",
        "dest_room",
        "action",
        "rule",
        "body",
    )


async def test_service_checkpoints_purges_and_remembers_notices(tmp_path: Path) -> None:
    from imbridge.archive.service import ArchiveService  # noqa: PLC0415
    from imbridge.db import Database  # noqa: PLC0415

    settings = Archive(
        retention_days=1,
        checkpoint_seconds=0.01,
        notice="Archived here.",
        legal_hold=(LegalHold(name="h", user="carol"),),
    )
    clock = Clock()
    store = ArchiveStore(settings, state_dir=tmp_path, clock=clock)
    async with Database(tmp_path / "s.db", {"archive": ARCHIVE_MIGRATIONS}) as db:
        async with ArchiveService(db, store) as service:

            def add(c: Conn) -> None:
                for i, user in enumerate(["alice", "carol", "bob"]):
                    store.record_event(c, message(i, user=user), [])

            await db.transact(add)
            assert await service.notice_due("corp-irc", "#ops") == "Archived here."
            await service.notice_posted("corp-irc", "#ops", "Archived here.")
            assert await service.notice_due("corp-irc", "#ops") is None
            assert await service.notice_due("corp-irc", "#other") == "Archived here."
            clock.now += 2 * DAY_US
            result = await service.purge()
            assert (result.deleted, result.held) == (2, 1)
        lines = store.head_file.read_text().splitlines()
        assert json.loads(lines[-1])["seq"] == 4  # three events and the purge
        assert await db.read(lambda c: store.verify(c)[0]) is None
    changed = ArchiveStore(Archive(notice="New wording."), state_dir=tmp_path)
    async with Database(tmp_path / "s.db", {"archive": ARCHIVE_MIGRATIONS}) as db:
        assert await db.read(lambda c: changed.notice_due(c, "corp-irc", "#ops")) == (
            "New wording."
        )


def test_terms_reach_the_full_text_index_in_batches(tmp_path: Path) -> None:
    conn = connect(tmp_path / "a.db")
    store = ArchiveStore(Archive(), state_dir=tmp_path)
    for i in range(3):
        store.record_event(conn, message(i), [])

    def indexed() -> int:
        return int(conn.execute("SELECT count(*) FROM archive_fts").fetchone()[0])

    assert indexed() == 0  # the relay path only queues terms
    assert store.index_pending(conn) == 3
    assert indexed() == 3
    assert store.index_pending(conn) == 0
    hits = conn.execute(
        "SELECT rowid FROM archive_fts WHERE archive_fts MATCH 'quarterly'"
    ).fetchall()
    assert len(hits) == 3
