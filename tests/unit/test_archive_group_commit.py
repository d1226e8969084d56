"""The archive's chain through group commits: events recorded by jobs committed
together, one of them failing after its records were written, still form one intact
chain (on PostgreSQL a job starts from the head the job before it wrote, which a
rollback to that job's savepoint must undo)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.schema import Archive
from imbridge.db import Conn, Database
from imbridge.events import Message, Origin, Sender, new_event_id
from imbridge.policy import Action, Decision, Destination

DEST = Destination("b", "#b")


def event_saying(text: str) -> Message:
    origin = Origin(network="a", room="#a", sender=Sender(id="u", name="u"))
    return Message(id=new_event_id(), origin=origin, text=text)


async def test_a_job_failing_after_its_records_leaves_the_chain_intact(
    db_location: Path | str, tmp_path: Path
) -> None:
    store = ArchiveStore(Archive(log_checkpoints=False), state_dir=tmp_path)

    def record(text: str, *, fail: bool = False) -> Callable[[Conn], None]:
        def fn(conn: Conn) -> None:
            event = event_saying(text)
            store.record_event(
                conn, event, [(DEST, Decision(action=Action.ALLOW, rule="default", event=event))]
            )
            if fail:
                raise RuntimeError("after the archive, before the commit")

        return fn

    async with Database(db_location, {"archive": ARCHIVE_MIGRATIONS}) as db:
        for _ in range(2):  # the second round starts from the first's committed head
            results: tuple[object, ...] = await asyncio.gather(
                db.transact(record("one")),
                db.transact(record("two", fail=True)),
                db.transact(record("three")),
                return_exceptions=True,
            )
            assert isinstance(results[1], RuntimeError)
            assert results[0] is None
            assert results[2] is None
        await db.transact(store.checkpoint)  # the signed head `verify` checks against
        problem, count = await db.read(store.verify)
        texts = await db.read(
            lambda conn: [
                json.loads(r.record.body)["text"]
                for r in store.rows(conn, "WHERE kind = 'event' ORDER BY seq")
            ]
        )
    assert problem is None
    assert count == 8  # four events, each with its decision
    assert texts == ["one", "three", "one", "three"]
