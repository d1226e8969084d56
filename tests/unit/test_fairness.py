"""Fair turns and the backlog rule as plain values: what holds for any arrival order."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from imbridge.backlog import Backlog, BacklogLimit
from imbridge.events import Delete, Event, EventId, Message, Origin, Sender, new_event_id
from imbridge.fairness import BURST, FairOrder, source_of


@dataclass
class Queued:
    event: Event
    tag: float = 0.0


def said(who: str, text: str = "hi", network: str = "a") -> Message:
    origin = Origin(network=network, room="#x", sender=Sender(id=who, name=who))
    return Message(id=new_event_id(), origin=origin, text=text)


def deleted_by(who: str, target: EventId) -> Delete:
    origin = Origin(network="a", room="#x", sender=Sender(id=who, name=who))
    return Delete(id=new_event_id(), origin=origin, target=target)


LONG = "x" * 2000


def test_a_newcomer_waits_for_the_flooders_burst_not_for_the_flood() -> None:
    order, queue = FairOrder(), deque[Queued]()
    for i in range(20):
        order.place(queue, Queued(said("mallory", f"flood {i} {LONG}")))
    quiet = Queued(said("alice", "quick question"))
    order.place(queue, quiet)
    # Mallory's first BURST bytes keep their place (2 064 bytes each, counted from the
    # head), the rest of the flood waits.
    assert list(queue).index(quiet) == 1 + BURST // 2064


def test_a_conversation_within_the_burst_keeps_arrival_order() -> None:
    order, queue = FairOrder(), deque[Queued]()
    turns = [said(who, f"line {i}") for i in range(30) for who in ("alice", "bob", "alice")]
    for event in turns:
        order.place(queue, Queued(event))
    assert [q.event for q in queue] == turns


def test_turns_are_shared_by_bytes_not_by_messages() -> None:
    order, queue = FairOrder(), deque[Queued]()
    for i in range(10):
        order.place(queue, Queued(said("big", "x" * 5000 + str(i))))
    for i in range(10):
        order.place(queue, Queued(said("small", f"s{i}")))
    senders = [q.event.origin.sender.id for q in queue]
    # Two long messages fit the burst; then ten short lines cost less than one long one.
    assert senders[:13] == ["big"] * 2 + ["small"] * 10 + ["big"]


def test_the_pinned_head_is_never_preceded() -> None:
    order, queue = FairOrder(pinned=3), deque[Queued]()
    for i in range(5):  # each past the burst: alone, a newcomer would go second
        order.place(queue, Queued(said("mallory", f"m{i} " + "x" * BURST)))
    head = list(queue)[:3]
    order.place(queue, Queued(said("alice")))
    assert list(queue)[:3] == head
    assert list(queue)[3].event.origin.sender.id == "alice"


def test_an_idle_queue_forgets_who_was_owed_what() -> None:
    order, queue = FairOrder(), deque[Queued]()
    for i in range(8):
        order.place(queue, Queued(said("mallory", f"m{i} {LONG}")))
    queue.clear()
    fresh = Queued(said("mallory"))
    order.place(queue, fresh)
    assert fresh.tag == 0.0


arrivals = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 6000), st.booleans()),
    min_size=1,
    max_size=60,
)


@given(arrivals, st.integers(1, 4), st.integers(0, 5))
def test_each_sender_keeps_their_order_and_a_delete_follows_its_message(
    steps: list[tuple[str, int, bool]], pinned: int, served_every: int
) -> None:
    order, queue = FairOrder(pinned=pinned), deque[Queued]()
    sent: list[Event] = []
    placed: list[Event] = []
    for n, (who, size, delete) in enumerate(steps):
        event: Event = said(who, "x" * size)
        if delete and placed:
            event = deleted_by(who, EventId(placed[n % len(placed)].id))
        placed.append(event)
        order.place(queue, Queued(event))
        if served_every and n % served_every == 0:
            sent.append(queue.popleft().event)
    sent += [q.event for q in queue]
    assert sorted(e.id for e in sent) == sorted(e.id for e in placed)  # nothing lost
    for who in "abc":
        mine = [e.id for e in placed if e.origin.sender.id == who]
        assert [e.id for e in sent if e.origin.sender.id == who] == mine
    position = {e.id: i for i, e in enumerate(sent)}
    for e in sent:
        if isinstance(e, Delete):
            assert position[e.target] < position[e.id]


LIMIT = BacklogLimit(max_items=10, max_bytes=100_000)


def test_past_the_limit_only_a_sender_with_an_even_share_or_more_is_turned_away() -> None:
    backlog = Backlog()
    flood, quiet = ("a", "mallory"), ("a", "alice")
    for _ in range(10):
        assert backlog.admits(flood, 100, LIMIT)
        backlog.add(flood, 100)
    assert not backlog.admits(flood, 100, LIMIT)
    for _ in range(4):  # an even share of 10 between two is 5
        assert backlog.admits(quiet, 100, LIMIT)
        backlog.add(quiet, 100)
    assert backlog.admits(quiet, 100, LIMIT)
    backlog.add(quiet, 100)
    assert not backlog.admits(quiet, 100, LIMIT)
    for _ in range(10):
        backlog.remove(flood, 100)
    assert backlog.admits(flood, 100, LIMIT)
    assert (backlog.items, backlog.bytes, backlog.held_by(quiet)) == (5, 500, 5)
    assert backlog.held_by(flood) == 0


def test_one_large_message_to_an_idle_room_passes_the_byte_limit() -> None:
    assert Backlog().admits(("a", "alice"), 2_000_000, BacklogLimit(max_bytes=1_048_576))


def test_never_more_than_twice_the_limit_whoever_sends() -> None:
    backlog = Backlog()
    for i in range(20):
        backlog.add(("a", f"user{i}"), 10)
    assert not backlog.admits(("a", "newcomer"), 10, LIMIT)


def test_a_previous_runs_backlog_counts_until_read_back_under_its_senders() -> None:
    backlog = Backlog(earlier=10)
    mallory = ("a", "mallory")
    assert backlog.admits(("a", "alice"), 10, LIMIT)  # nothing of hers is known to wait
    backlog.adopt(mallory, 10)
    assert (backlog.items, backlog.earlier, backlog.held_by(mallory)) == (1, 9, 1)
    assert source_of(said("mallory")) == mallory
