"""Delivery bookkeeping: a retry waits for the stanza already in flight, a lost session
releases exactly the items its archive did not hold, confirmations are remembered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from imbridge.adapters.xmpp.delivery import REMEMBER_DELIVERED, RESEND, Delivery
from imbridge.adapters.xmpp.proto.formatting import rich_to_xhtml, xhtml_to_rich
from imbridge.adapters.xmpp.rooms import Cursor, Room, Seen, Turn
from imbridge.events import EventId, RemoteId, RichText


async def test_confirmed_item_is_remembered_and_its_waiter_released() -> None:
    delivery = Delivery()
    pending = delivery.track("o1", "room", generation=1, now=10.0)
    assert delivery.pending("o1") is pending
    assert delivery.confirm("o1", RemoteId("sid"))
    assert await pending.future == "sid"
    assert delivery.delivered("o1") == "sid"
    assert delivery.pending("o1") is None
    assert not delivery.confirm("other", RemoteId("x"))  # not ours in flight, still noted


async def test_new_session_releases_only_older_items_for_resend() -> None:
    delivery = Delivery()
    old = delivery.track("old", "room", generation=1, now=1.0)
    new = delivery.track("new", "room", generation=2, now=2.0)
    assert delivery.earliest("room") == 1.0
    assert delivery.release_older_than(2) == 1
    assert await old.future is RESEND
    assert delivery.pending("old") is None
    assert delivery.pending("new") is new


async def test_delivered_memory_is_bounded() -> None:
    delivery = Delivery(remember=3)
    for n in range(5):
        delivery.confirm(f"o{n}", RemoteId(f"s{n}"))
    assert delivery.delivered("o0") is None
    assert delivery.delivered("o4") == "s4"


async def test_a_long_run_remembers_only_the_latest_confirmations() -> None:
    delivery = Delivery()
    n = 3 * REMEMBER_DELIVERED
    for i in range(n):
        delivery.confirm(f"o{i}", RemoteId(f"s{i}"))
    remembered = [i for i in range(n) if delivery.delivered(f"o{i}") is not None]
    assert remembered == list(range(n - REMEMBER_DELIVERED, n))
    assert REMEMBER_DELIVERED <= 4096  # the memory it takes stays around a MiB


def test_cursor_round_trips_and_rejects_garbage() -> None:
    cursor = Cursor.loads(Cursor("sid", datetime.now(UTC)).dumps())
    assert cursor is not None
    assert cursor.stanza_id == "sid"
    assert Cursor.loads("{not json") is None
    assert Cursor.loads(None) is None


def test_seen_forgets_oldest() -> None:
    seen = Seen(size=2)
    for sid in ("a", "b", "c"):
        seen.add(sid)
    assert "a" not in seen
    assert "c" in seen


def test_xhtml_round_trip_keeps_the_neutral_formatting() -> None:
    rich = RichText('<b>bold</b> <i>it</i> <u>u</u> <s>s</s> <a href="https://x.org/">l</a><br>x')
    back = xhtml_to_rich(rich_to_xhtml(rich))
    assert back is not None
    for part in ("<strong>bold</strong>", "<em>it</em>", "<u>u</u>", "<s>s</s>",
                 '<a href="https://x.org/">l</a>', "<br>"):  # fmt: skip
        assert part in back


async def test_sends_write_in_the_order_they_took_their_turns() -> None:
    """A later send that is ready first still writes after the earlier one; one that
    gives up (cancelled, or failed before writing) lets the next one go."""
    room = Room(jid="r@muc", wanted_nick="relay")
    first, second, third = room.take_turn(), room.take_turn(), room.take_turn()
    written: list[str] = []

    async def write(name: str, turn: Turn) -> None:
        try:
            await turn.wait()
            written.append(name)
        finally:
            turn.done()

    later = [asyncio.create_task(write("2", second)), asyncio.create_task(write("3", third))]
    await asyncio.sleep(0)
    assert written == []  # both ready, both waiting for the first
    later[0].cancel()  # the second gives up ...
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert written == []  # ... which does not let the third overtake the first
    written.append("1")
    first.done()
    await asyncio.gather(*later, return_exceptions=True)
    assert written == ["1", "3"]
    assert room.take_turn().previous is third.mine


async def test_a_confirmed_copy_names_its_event_before_the_id_map_has_it() -> None:
    """A reaction to the relay's copy may follow its reflection at once; the outbox
    writes the delivery to the id map a few loop turns later, so the target must be
    found in memory meanwhile."""
    delivery = Delivery()
    delivery.track("o1", "room", generation=1, now=1.0, event_id=EventId("ev-1"))
    assert delivery.event_of(RemoteId("sid-1")) is None  # in flight: no stanza-id yet
    delivery.confirm("o1", RemoteId("sid-1"))
    assert delivery.event_of(RemoteId("sid-1")) == "ev-1"
    delivery.confirm("someone-elses", RemoteId("sid-2"))  # not ours: names nothing
    assert delivery.event_of(RemoteId("sid-2")) is None
