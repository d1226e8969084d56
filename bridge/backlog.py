"""How much one destination may have waiting, and whose new items it turns away.

Fair turns (`fairness`) keep a flood from delaying everyone else, but not from growing
without end: a sender posting faster than an IRC channel can take would queue hours of
lines. Each destination therefore has a backlog limit (items and bytes). Past it, a
sender's new item is shed only if that sender already holds at least an even share of
what is waiting; a sender with less (or nothing) waiting still gets through, so a quiet
person is never turned away because someone else flooded. The backlog can thus pass the
limit by the quiet senders' shares, never past twice the limit.

Shedding is decided by the relay inside its commit (`shedding`), so what is shed is on
the record in the same transaction; this module only counts. Sans-I/O. The counts take a
lock: with PostgreSQL the relay's commit runs in the database thread while the outbox
uncounts delivered items on the loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from imbridge.fairness import Source


class BacklogLimit(BaseModel):
    """`networks.<name>.backlog`: the limit of each destination room on that network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_items: int = Field(default=500, ge=1)
    """Deliveries waiting per room (the outbox keeps 512 per room in memory, so by
    default the whole backlog is in fair order)."""
    max_bytes: int = Field(default=1_048_576, ge=1024)
    """Bytes of text waiting per room, counted as the fair order counts them."""
    notice_every: float = Field(default=600.0, gt=0)
    """Seconds between two notices about the same sender in the same room."""


@dataclass(slots=True)
class Backlog:
    """What one destination has waiting, per source. Only counts: an item waiting on
    disk costs no memory here (the outbox marks each item it counted, `Item.counted`)."""

    items: int = 0
    bytes: int = 0
    earlier: int = 0
    """Items a previous run left queued, not read back yet (their senders unknown)."""
    _sources: dict[Source, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def admits(self, source: Source, size: int, limit: BacklogLimit) -> bool:
        """Whether `source` may queue one more item of `size` bytes here."""
        with self._lock:
            return self._admits(source, size, limit)

    def _admits(self, source: Source, size: int, limit: BacklogLimit) -> bool:
        items = self.items + self.earlier
        if items < limit.max_items and self.bytes + size <= limit.max_bytes:
            return True
        if items >= 2 * limit.max_items or self.bytes >= 2 * limit.max_bytes:
            return False
        mine = self._sources.get(source)
        if mine is None:
            return True  # nothing of theirs waits: they are not the ones flooding
        share = len(self._sources)
        return mine[0] < limit.max_items / share and mine[1] + size <= limit.max_bytes / share

    def add(self, source: Source, size: int) -> None:
        """Counts an item queued."""
        with self._lock:
            self._add(source, size)

    def _add(self, source: Source, size: int) -> None:
        self.items += 1
        self.bytes += size
        mine = self._sources.setdefault(source, [0, 0])
        mine[0] += 1
        mine[1] += size

    def adopt(self, source: Source, size: int) -> None:
        """Counts an item a previous run left, read back now with its sender known."""
        with self._lock:
            self.earlier = max(0, self.earlier - 1)
            self._add(source, size)

    def remove(self, source: Source, size: int) -> None:
        """A counted item left the queue (delivered, failed for good, or not needed)."""
        with self._lock:
            self.items = max(0, self.items - 1)
            self.bytes = max(0, self.bytes - size)
            mine = self._sources.get(source)
            if mine is None:
                return
            mine[0] -= 1
            mine[1] -= size
            if mine[0] <= 0:
                del self._sources[source]

    def held_by(self, source: Source) -> int:
        """Items `source` has waiting here."""
        mine = self._sources.get(source)
        return mine[0] if mine else 0


__all__ = ["Backlog", "BacklogLimit"]
