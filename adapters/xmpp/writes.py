"""The adapter's writes to its state slot (`Cursors`), coalesced and written by one task.

Every relayed message would otherwise cost several writes of its own, each its own task:
the room cursor (for every stanza with a stanza-id, the relay's reflections included),
the sender's message ids (`mid:`), the origin-id of each of the relay's copies (`oid:`).
Here they wait in one dict until the single writer takes them all at once, so a burst
costs a few commits instead of several per message; a newer value for a key replaces an
older one still waiting (a room cursor moves with every message, and only its latest
position matters).

Order is the caller's to keep: a value is put only once it may be written (a room cursor
once the event it follows is on disk, from the `then` of `Intake.put`), and the values of
one key reach the disk in the order they were put. What waits here is read through `get`,
so the adapter never reads back an older value than one it already handed over.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from imbridge.adapter import Cursors

RECENT_IDS = 1024
"""Id mappings (`mid:`, `oid:`) kept in memory per kind: the last ones written, which is
what corrections and reactions name nearly always. Every one is on disk too, so an older
one costs a read, not a wrong answer. The cap keeps a long run at a steady size: at
50 000 entries each (about 200 bytes an entry) the two maps grew for hours towards
20 MiB, which is a leak to anyone watching the process."""


class CoalescedWrites:
    """Pending key -> value writes and the one task that writes them."""

    def __init__(self, cursors: Cursors, *, log: Any) -> None:
        self._cursors = cursors
        self._log = log
        self._pending: dict[str, str] = {}
        self._writing: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending) + len(self._writing)

    def put(self, key: str, value: str) -> None:
        """Queues `key` = `value`, replacing a value for `key` that waits; returns at once."""
        self._pending[key] = value
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def get(self, key: str) -> str | None:
        """The latest value of `key`: one still waiting or being written, else the stored."""
        if key in self._pending:
            return self._pending[key]
        if key in self._writing:
            return self._writing[key]
        return await self._cursors.get(key)

    async def aclose(self, grace: float = 2.0) -> None:
        """Lets what waits reach the disk for up to `grace` seconds, then stops the writer;
        what it did not write stays queued for the next `put`."""
        task = self._task
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._task = None

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            self._writing = batch
            try:
                # Started together, so the database commits them as one group.
                results = await asyncio.gather(
                    *(self._cursors.set(key, value) for key, value in batch.items()),
                    return_exceptions=True,
                )
            except asyncio.CancelledError:
                for key, value in batch.items():  # unknown which landed: keep them all
                    self._pending.setdefault(key, value)
                raise
            finally:
                self._writing = {}
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                self._log.warning("state_write_failed", count=len(failed), error=str(failed[0]))


class RecentIds:
    """Key -> id mappings written through `writes`, the latest `size` also held in memory
    so the hot lookups (a correction of the message just sent) need no read."""

    def __init__(self, writes: CoalescedWrites, size: int = RECENT_IDS) -> None:
        self._writes = writes
        self._size = size
        self._recent: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recent)

    def put(self, key: str, value: str) -> None:
        """Stores `key` = `value` (queued for the disk) and keeps it among the recent."""
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > self._size:
            self._recent.popitem(last=False)
        self._writes.put(key, value)

    async def get(self, key: str) -> str | None:
        """The value of `key`: from memory when recent, else from the state slot."""
        value = self._recent.get(key)
        return value if value is not None else await self._writes.get(key)
