"""The state database's ordering promises, which let adapters hand events over without
waiting for each commit: writes commit in submission order, a reserved slot holds its
place, and a read sees every write queued before it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from imbridge.db import Conn, Database
from imbridge.errors import StateError
from imbridge.events import Event, Message, Origin, Sender, new_event_id
from imbridge.intake import Intake


def log_table(conn: Conn) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS log (pos INTEGER, n INTEGER)")


def append(n: int) -> Callable[[Conn], int]:
    def fn(conn: Conn) -> int:
        log_table(conn)
        conn.execute("INSERT INTO log SELECT count(*), ? FROM log", (n,))  # commit order
        return n

    return fn


def logged(conn: Conn) -> list[int]:
    log_table(conn)
    return [row[0] for row in conn.execute("SELECT n FROM log ORDER BY pos")]


async def test_a_reserved_slot_keeps_its_place_in_the_commit_order(db_location: Path | str) -> None:
    async with Database(db_location) as db:
        slot = db.reserve()
        later = db.submit(append(2))
        await asyncio.sleep(0.05)
        assert not later.done()  # waits for the slot before it
        assert await slot.run(append(1)) == 1
        assert await later == 2
        assert await db.read(logged) == [1, 2]


async def test_a_released_slot_lets_later_writes_through(db_location: Path | str) -> None:
    async with Database(db_location) as db:
        slot = db.reserve()
        later = db.submit(append(7))
        slot.release()
        assert await later == 7
        with pytest.raises(StateError):
            await slot.run(append(8))
        assert await db.read(logged) == [7]


async def test_a_slot_can_read_before_its_own_write(db_location: Path | str) -> None:
    async with Database(db_location) as db:
        first = db.submit(append(1))
        slot = db.reserve()
        seen = await slot.read(logged)  # would deadlock if queued behind the slot
        await slot.run(append(2))
        await first
        assert seen == [1]
        assert await db.read(logged) == [1, 2]


async def test_a_read_sees_every_write_queued_before_it(db_location: Path | str) -> None:
    async with Database(db_location) as db:
        for n in range(50):
            db.submit(append(n))
        assert await db.read(logged) == list(range(50))


async def test_a_failing_write_fails_alone(db_location: Path | str) -> None:
    def broken(conn: Conn) -> None:
        log_table(conn)
        conn.execute("INSERT INTO log VALUES (99, 99)")
        raise ValueError("boom")

    async with Database(db_location) as db:
        results: tuple[object, ...] = await asyncio.gather(
            db.transact(append(1)),
            db.transact(broken),
            db.transact(append(2)),
            return_exceptions=True,
        )
        assert results[0] == 1
        assert results[2] == 2
        assert isinstance(results[1], ValueError)
        assert await db.read(logged) == [1, 2]


def refused(then: int | None = None) -> Callable[[Conn], None]:
    """A write the database refuses (a duplicate key) with no result read, as most relay
    statements are: on PostgreSQL its error arrives after the statement was sent; then,
    with `then`, more statements sent after the refused one."""

    def fn(conn: Conn) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS once (k INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO once VALUES (1)")
        conn.execute("INSERT INTO once VALUES (1)")
        if then is not None:
            append(then)(conn)

    return fn


async def test_a_write_the_database_refuses_fails_alone(db_location: Path | str) -> None:
    async with Database(db_location) as db:
        for broken in (refused(), refused(then=98)):
            results: tuple[object, ...] = await asyncio.gather(
                db.transact(append(1)),
                db.transact(broken),
                db.transact(append(2)),
                return_exceptions=True,
            )
            assert results[0] == 1
            assert isinstance(results[1], Exception)
            assert "once" in str(results[1]) or "UNIQUE" in str(results[1])
            assert results[2] == 2
        with pytest.raises(Exception, match=r"once|UNIQUE"):  # alone in its commit
            await db.transact(refused(then=97))
        assert await db.transact(append(3)) == 3
        assert await db.read(logged) == [1, 2, 1, 2, 3]


def message(n: int) -> Message:
    origin = Origin(network="a", room="#r", sender=Sender(id="u", name="u"))
    return Message(id=new_event_id(), origin=origin, text=str(n))


async def test_intake_runs_then_callbacks_in_arrival_order_after_each_event() -> None:
    """Events finish out of order (the sink is slower for some), yet each `then` runs
    after its own event and all of them in arrival order: a cursor never moves past an
    event still in flight."""
    finished: list[str] = []
    order: list[str] = []

    async def sink(event: Event) -> None:
        assert isinstance(event, Message)
        await asyncio.sleep(0.02 if int(event.text) % 3 == 0 else 0.001)
        finished.append(event.text)

    intake = Intake(sink, window=4)
    for n in range(12):

        def then(n: int = n) -> None:
            assert str(n) in finished
            order.append(str(n))

        await intake.put(message(n), then)
    await intake.put(None, lambda: order.append("end"))
    await intake.drain()
    assert order == [*map(str, range(12)), "end"]
    assert finished != [str(n) for n in range(12)]  # the sink did finish out of order
    assert len(intake) == 0


async def test_intake_window_bounds_what_is_in_flight() -> None:
    running = 0
    most = 0
    gate = asyncio.Event()

    async def sink(event: Event) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1

    intake = Intake(sink, window=3)
    putting = asyncio.create_task(intake.put(message(0)))
    for n in range(1, 4):
        await putting
        putting = asyncio.create_task(intake.put(message(n)))
        await asyncio.sleep(0.01)
    assert most == 3
    assert not putting.done()  # the fourth waits for room in the window
    gate.set()
    await putting
    await intake.drain()
    assert most == 3
