"""The inbound queue between the stream and the inbound consumer, bounded by
back-pressure.

Stanzas arrive as fast as the server writes them; the consumer hands them to the core,
which commits each to disk. A room that outpaces the disk (a flood, a catch-up of the
whole archive, a stalled database) must not grow this queue without limit: past
`high` waiting items the session stops reading its socket, so what the server sends
next waits in the kernel's buffers and then in the server's (TCP flow control), and it
reads again once the consumer has brought the queue down to `low`. Nothing is dropped:
a stanza already read always gets its place, so order is kept. Archive results
(`CatchUp`) count as one item each: the session asked for them and waits for them.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .proto.stanzas import WireMessage
from .rooms import Room

HIGH = 10_000
"""Waiting items past which reading pauses (as the IRC adapter's inbox)."""
LOW = 1_000
"""Waiting items below which reading resumes."""


@dataclass(slots=True)
class CatchUp:
    """Archive results for one room, handled in the inbound consumer's order."""

    room: Room
    messages: list[WireMessage]
    done: asyncio.Future[None]


Work = tuple[str, ET.Element] | CatchUp
"""One item of the inbound queue: a live stanza ("message" or "presence"), or a catch-up."""


class Reading(Protocol):
    """The side that reads the socket: the session, pausing its current transport."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Inbox:
    """Work in arrival order, with reading paused between the high and low marks."""

    def __init__(self, reading: Reading, *, high: int = HIGH, low: int = LOW) -> None:
        if not 0 <= low < high:
            raise ValueError("the low mark must be below the high mark")
        self.high = high
        self.low = low
        self._reading = reading
        self._items: deque[Work] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.peak = 0
        """The most items that ever waited at once: what back-pressure bounds."""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def paused(self) -> bool:
        return self._paused

    def put(self, work: Work) -> None:
        """Queues `work`, never refusing it; pauses reading once past the high mark."""
        self._items.append(work)
        self.peak = max(self.peak, len(self._items))
        if len(self._items) > self.high and not self._paused:
            self._paused = True
            self._reading.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Work:
        """The oldest item, waiting for one; resumes reading once down to the low mark."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        work = self._items.popleft()
        if self._paused and len(self._items) <= self.low:
            self._paused = False
            self._reading.resume_reading()
        return work

    def clear(self) -> None:
        """Forgets what waits (a new run replays nothing of the last one's connection)."""
        self._items.clear()
        if self._paused:
            self._paused = False
            self._reading.resume_reading()
