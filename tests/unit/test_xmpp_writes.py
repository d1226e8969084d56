"""The XMPP adapter's coalesced state writes: latest value wins, nothing read stale."""

from __future__ import annotations

import asyncio

import structlog

from imbridge.adapters.xmpp.writes import RECENT_IDS, CoalescedWrites, RecentIds
from imbridge.events import EventId, RemoteId
from imbridge.testing import DictCursors


class SlowCursors:
    """A `Cursors` whose writes take a loop turn, recording every write in order."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []

    async def get(self, key: str) -> str | None:
        return self.stored.get(key)

    async def set(self, key: str, value: str) -> None:
        await asyncio.sleep(0.001)
        self.writes.append((key, value))
        self.stored[key] = value

    async def event_id(self, remote_id: RemoteId) -> EventId | None:
        return None

    async def remote_id(self, event_id: EventId, room: str) -> RemoteId | None:
        return None


async def test_a_burst_of_cursor_moves_writes_few_times_and_ends_at_the_latest() -> None:
    cursors = SlowCursors()
    writes = CoalescedWrites(cursors, log=structlog.get_logger())
    for i in range(100):
        writes.put("room", f"c{i}")
        writes.put(f"oid:{i}", f"o{i}")
        if i % 10 == 0:
            await asyncio.sleep(0)
    assert await writes.get("room") == "c99"  # what waits is read, never an older value
    await writes.aclose()
    assert cursors.stored["room"] == "c99"
    assert all(cursors.stored[f"oid:{i}"] == f"o{i}" for i in range(100))
    room_writes = [v for k, v in cursors.writes if k == "room"]
    assert len(room_writes) < 100
    assert room_writes == sorted(room_writes, key=lambda v: int(v[1:]))  # in put order
    assert len(writes) == 0


async def test_values_left_at_close_are_written_by_the_next_put() -> None:
    cursors = SlowCursors()
    writes = CoalescedWrites(cursors, log=structlog.get_logger())
    writes.put("a", "1")
    await writes.aclose(grace=0)  # cancelled before its write finished
    writes.put("b", "2")
    await writes.aclose()
    assert cursors.stored == {"a": "1", "b": "2"}


async def test_recent_ids_stay_bounded_and_older_ones_are_read_from_the_state_slot() -> None:
    cursors = DictCursors()
    writes = CoalescedWrites(cursors, log=structlog.get_logger())
    recent = RecentIds(writes)
    for i in range(3 * RECENT_IDS):
        recent.put(f"oid:s{i}", f"o{i}")
    await writes.aclose()
    assert len(recent) == RECENT_IDS  # a long run holds only the latest in memory
    assert await recent.get("oid:s0") == "o0"  # the oldest still answers, from disk
    assert await recent.get(f"oid:s{3 * RECENT_IDS - 1}") == f"o{3 * RECENT_IDS - 1}"
