"""Per-room commit order while events wait on policy hooks.

The relay takes an event's place in the database's commit order (`Database.reserve`)
before its first await, and every later commit waits for that place to be filled. Held
across a hook call, one slow DLP answer would stop the commit of every room. So with
hooks configured the relay asks them first, concurrently for every event, and takes its
commit place only afterwards, in the order of this queue: per source room, in arrival
order. Events of one room still commit in the order they arrived (an edit never before
its message); rooms no longer wait for each other. An adapter's cursor is still safe:
`Intake` advances it in arrival order, each step once its own event is on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class Turn:
    __slots__ = ("_key", "_mine", "_owner", "_previous")

    def __init__(
        self,
        owner: RoomTurns,
        key: Hashable,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        self._owner = owner
        self._key = key
        self._previous = previous
        self._mine = mine

    async def wait(self) -> None:
        """Until the room's previous event has taken its place (or given up)."""
        if self._previous is not None and not self._previous.done():
            await asyncio.wait([self._previous])  # never cancels the other's future

    def done(self) -> None:
        """Lets the room's next event go; called once this one has its place, or failed."""
        if not self._mine.done():
            self._mine.set_result(None)
        if self._owner._last.get(self._key) is self._mine:
            del self._owner._last[self._key]


class RoomTurns:
    def __init__(self) -> None:
        self._last: dict[Hashable, asyncio.Future[None]] = {}

    def enter(self, key: Hashable) -> Turn:
        """Queues an event for `key`'s next turn; synchronous, so call order is order."""
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self._last.get(key)
        self._last[key] = mine
        return Turn(self, key, previous, mine)

    def __len__(self) -> int:
        return len(self._last)
