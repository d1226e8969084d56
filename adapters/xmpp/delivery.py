"""Which outgoing stanzas the rooms have confirmed, so a retry never posts twice.

An item counts as delivered when the room reflects it back carrying the origin-id the
relay set (XEP-0045 §7.2.2 reflection; XEP-0359). Until then it is in flight: the outbox
may call `send` again for it (after a timeout), and then it must wait for the same
stanza instead of posting a second copy, because stream management (XEP-0198) may still
be delivering the first. Only when a new session starts (resumption failed, so slixmpp
dropped its unacked queue) and the room's archive does not hold the item is it released
for a resend. No I/O here: the adapter feeds in what it sees.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import EventId, RemoteId

RESEND = None
"""Result of an in-flight future whose stanza was lost: send it again."""

PERMANENT = frozenset({
    "forbidden", "not-allowed", "policy-violation", "bad-request", "not-authorized",
    "item-not-found", "jid-malformed", "not-acceptable-permanently",
})  # fmt: skip
"""Error conditions after which the same stanza can never be accepted (RFC 6120 §8.3.3):
a delivery that meets one fails for good instead of being retried."""
NOT_IN_ROOM = frozenset({"not-acceptable"})
"""The room refused a stanza because its sender is not an occupant (XEP-0045 §7.4): the
sender joins again and the delivery is retried."""


@dataclass(slots=True)
class Pending:
    room: str
    generation: int
    sent_at: float
    future: asyncio.Future[RemoteId | None] = field(repr=False)
    event_id: EventId | None = None
    """The core event the stanza carries: what its stanza-id stands for in the id map."""


REMEMBER_DELIVERED = 4096
"""Confirmed origin-ids kept so a retry of a message the room already has is not sent
again. A retry follows its failure within seconds, and at most a send window per room is
in flight when a connection drops, so the latest few thousand cover it; at 20 000 the
map grew for the first hour of a busy day (to about 4 MiB) before it stayed put."""

REMEMBER_EVENTS = 1024
"""Confirmed copies whose event ids are kept in memory (`event_of`). They are needed only
until the outbox has committed the delivery to the id map, a few turns of the loop
later; a thousand covers the send windows of every room in a burst many times over."""


class Delivery:
    """In-flight and delivered origin-ids, bounded so a long run does not grow forever."""

    def __init__(self, *, remember: int = REMEMBER_DELIVERED) -> None:
        self._remember = remember
        self.inflight: dict[str, Pending] = {}
        self._delivered: OrderedDict[str, RemoteId] = OrderedDict()
        self._events: OrderedDict[RemoteId, EventId] = OrderedDict()
        self._topics: dict[str, list[str]] = {}  # room -> subject changes in flight

    def delivered(self, oid: str) -> RemoteId | None:
        return self._delivered.get(oid)

    def event_of(self, remote_id: RemoteId) -> EventId | None:
        """The event one of the relay's recently confirmed copies carries, by the id the
        room gave it. A reaction or a correction naming the copy can arrive right after
        its reflection, before the outbox has written the delivery to the id map; this
        is where it finds its target meanwhile (otherwise it would be dropped)."""
        return self._events.get(remote_id)

    def pending(self, oid: str) -> Pending | None:
        pending = self.inflight.get(oid)
        if pending is not None and pending.future.done() and pending.future.result() is RESEND:
            del self.inflight[oid]
            return None
        return pending

    def track(
        self,
        oid: str,
        room: str,
        generation: int,
        now: float,
        *,
        event_id: EventId | None = None,
    ) -> Pending:
        future: asyncio.Future[RemoteId | None] = asyncio.get_running_loop().create_future()
        pending = Pending(
            room=room, generation=generation, sent_at=now, future=future, event_id=event_id
        )
        self.inflight[oid] = pending
        return pending

    def confirm(self, oid: str, remote_id: RemoteId) -> bool:
        """The room reflected `oid`; True if it was one of ours in flight."""
        self._delivered[oid] = remote_id
        self._delivered.move_to_end(oid)
        while len(self._delivered) > self._remember:
            self._delivered.popitem(last=False)
        pending = self.inflight.pop(oid, None)
        if pending is None:
            return False
        if pending.event_id is not None:
            self._events[remote_id] = pending.event_id
            while len(self._events) > REMEMBER_EVENTS:
                self._events.popitem(last=False)
        if not pending.future.done():
            pending.future.set_result(remote_id)
        return True

    def fail(self, oid: str, error: BaseException) -> None:
        pending = self.inflight.pop(oid, None)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(error)

    def refused(self, oid: str, room: str, condition: str) -> bool:
        """The room bounced `oid` with error `condition`: the delivery fails, for good or
        to be retried as the condition says. True when the sender is no longer an
        occupant, so it must join again before the retry can pass."""
        if condition in NOT_IN_ROOM:
            self.fail(oid, RetryableSendError(f"not in {room}"))
            return True
        if condition in PERMANENT:
            self.fail(oid, PermanentSendError(f"{room} refused it: {condition}"))
        else:
            self.fail(oid, RetryableSendError(f"{room}: {condition}"))
        return False

    def track_topic(self, oid: str, room: str) -> None:
        """A subject change in flight: MUC rebuilds subject messages, dropping ids, so its
        reflection is matched by room instead (`confirm_topics`)."""
        self._topics.setdefault(room, []).append(oid)

    def confirm_topics(self, room: str, remote_id: str | None) -> None:
        """The room announced its subject: every subject change sent there is in."""
        for oid in self._topics.pop(room, []):
            self.confirm(oid, RemoteId(remote_id or oid))

    def release_older_than(self, generation: int) -> int:
        """Marks every item sent before session `generation` for a resend; the archive of
        the new session has been checked, so these never reached their room."""
        count = 0
        for oid, pending in list(self.inflight.items()):
            if pending.generation < generation:
                del self.inflight[oid]
                if not pending.future.done():
                    pending.future.set_result(RESEND)
                count += 1
        return count

    def earliest(self, room: str) -> float | None:
        """When the oldest unconfirmed item for `room` was sent (wall clock)."""
        times = [p.sent_at for p in self.inflight.values() if p.room == room]
        return min(times) if times else None
