"""Fair turns between senders in one destination's queue.

A destination that is slower than its senders (an IRC channel at a few lines a second)
builds a queue; in arrival order one person pasting large messages would push everyone
else's lines behind theirs. Here each queued item gets a tag by start-time fair queuing
over bytes: a sender's item starts where their previous one finished (in bytes sent), or
at the queue's current position if they have been quiet, and the queue is kept in tag
order. Every sender with something waiting thus gets an equal share of the bytes the
destination takes, whoever queued first.

Each sender may be up to `BURST` bytes ahead before turns apply (a token bucket per
sender, in effect): below it every item starts at the queue's position and the room
keeps arrival order, so a conversation, or the backlog of a short outage, is relayed as
it was said; only someone sending more than that ahead of the room waits for others.

Invariants:
* one sender's items keep their order (their tags only grow), so an edit never overtakes
  its message;
* an item that refers to another queued item (an edit, delete, reaction or reply of
  someone else's message) is placed after it, so its lookup finds the copy;
* the first `pinned` items of a queue may already be on their way and are never
  preceded by a newcomer;
* no state survives an empty queue, and tags are rebuilt from the items themselves, so a
  restart that reads a queue back in order restores the same fair order.

Sans-I/O: plain values, no clock, no tasks.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from imbridge.events import Delete, Edit, Event, EventId, Message, Reaction, Topic

Source = tuple[str, str]
"""Who a queued item speaks for: (origin network, sender id). One person posting in
several rooms of a gateway is one source."""

OVERHEAD = 64
"""Bytes counted per item besides its text: what a protocol adds to each line, so many
tiny messages are not free."""

BURST = 8192
"""Bytes a sender may have waiting ahead of the room's progress before others go first:
a few long messages or a few dozen short ones, some 30 s of a stock IRC channel."""

_PRUNE_AT = 64


class Queued(Protocol):
    """What the fair order needs of a queued item (the outbox's `Item`)."""

    event: Event
    tag: float


Q = TypeVar("Q", bound=Queued)


def source_of(event: Event) -> Source:
    return (event.origin.network, event.origin.sender.id)


def cost_of(event: Event) -> int:
    """The bytes an item costs its sender's share: its text and attachment names."""
    size = OVERHEAD
    if isinstance(event, Message | Edit | Topic):
        size += len(event.text.encode("utf-8", "surrogatepass"))
    if isinstance(event, Message):
        size += sum(len(a.url) + len(a.name or "") for a in event.attachments)
    if isinstance(event, Reaction):
        size += len(event.key.encode("utf-8", "surrogatepass"))
    return size


def target_of(event: Event) -> EventId | None:
    """The event this one refers to, which must reach the room first."""
    if isinstance(event, Edit | Delete | Reaction):
        return event.target
    if isinstance(event, Message):
        return event.reply_to
    return None


@dataclass(slots=True)
class FairOrder:
    """The fair order of one destination's queue."""

    pinned: int = 1
    """Items at the head that may be in flight; the outbox sets it to the send window."""
    _now: float = 0.0
    """The queue's progress: the largest head tag seen (never goes back)."""
    _sources: dict[Source, tuple[float, float]] = field(default_factory=dict)
    """Per sender: where their next item starts in bytes, and their last item's tag."""

    def place(self, queue: MutableSequence[Q], item: Q) -> None:
        """Tags `item` and inserts it in `queue` (kept in tag order past the pinned head)."""
        if not queue:
            self._sources.clear()  # an idle destination owes nobody anything
            self._now = 0.0
        else:
            self._now = max(self._now, queue[0].tag)
        now = self._now
        source = source_of(item.event)
        finish, last = self._sources.get(source, (now, now))
        start = max(now, finish)
        tag = max(now, start - BURST, last)  # `last`: a sender's tags never go back
        target = target_of(item.event)
        if target is not None:
            for queued in queue:
                if queued.event.id == target:
                    tag = max(tag, queued.tag)
        item.tag = tag
        self._sources[source] = (start + cost_of(item.event), tag)
        lo, hi = min(self.pinned, len(queue)), len(queue)
        if hi and queue[hi - 1].tag <= tag:
            lo = hi  # the usual case, one sender or arrival order kept: at the end
        while lo < hi:  # the first place past the pinned head whose tag is larger
            mid = (lo + hi) // 2
            if queue[mid].tag <= tag:
                lo = mid + 1
            else:
                hi = mid
        if lo == len(queue):
            queue.append(item)
        else:
            queue.insert(lo, item)
        if len(self._sources) > _PRUNE_AT:
            # A sender within their burst and not ahead is the same as one never seen.
            self._sources = {
                s: (f, t) for s, (f, t) in self._sources.items() if f - BURST > now or t > now
            }


__all__ = [
    "BURST",
    "OVERHEAD",
    "FairOrder",
    "Queued",
    "Source",
    "cost_of",
    "source_of",
    "target_of",
]
