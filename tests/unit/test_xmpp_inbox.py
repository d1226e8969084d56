"""The XMPP inbound queue is bounded by back-pressure: past its high mark the session
stops reading the socket, below its low mark it reads again, and nothing already read
is dropped or reordered."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest

from imbridge.adapters.xmpp.inbox import CatchUp, Inbox, Work
from imbridge.adapters.xmpp.rooms import Room


class Socket:
    """What the session does to its transport, as the inbox asks."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def stanza(n: int) -> Work:
    return ("message", ET.Element("message", {"id": str(n)}))


def ids(items: list[Work]) -> list[str]:
    return [w[1].get("id", "") for w in items if not isinstance(w, CatchUp)]


async def test_reading_pauses_past_the_high_mark_and_resumes_at_the_low_one() -> None:
    socket = Socket()
    inbox = Inbox(socket, high=5, low=2)
    for n in range(5):
        inbox.put(stanza(n))
    assert socket.calls == []  # at the mark, not past it
    inbox.put(stanza(5))
    assert (socket.calls, inbox.paused) == (["pause"], True)
    for n in range(6, 40):  # what one read still brings in is kept, and pauses no more
        inbox.put(stanza(n))
    assert socket.calls == ["pause"]
    out = [await inbox.get() for _ in range(37)]
    assert socket.calls == ["pause"]  # three still wait: above the low mark
    out.append(await inbox.get())
    assert (socket.calls, inbox.paused) == (["pause", "resume"], False)
    out += [await inbox.get() for _ in range(2)]
    assert ids(out) == [str(n) for n in range(40)]
    assert (len(inbox), inbox.peak) == (0, 40)


async def test_a_waiting_consumer_gets_the_next_item_in_order() -> None:
    inbox = Inbox(Socket(), high=5, low=2)
    got = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not got.done()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    catch_up = CatchUp(Room(jid="r@muc", wanted_nick="relay"), [], done)
    inbox.put(catch_up)  # archive results take their place like any stanza
    inbox.put(stanza(1))
    assert await got is catch_up
    assert ids([await inbox.get()]) == ["1"]


async def test_a_new_run_forgets_what_waited_and_reads_again() -> None:
    socket = Socket()
    inbox = Inbox(socket, high=1, low=0)
    inbox.put(stanza(1))
    inbox.put(stanza(2))
    inbox.clear()
    assert (socket.calls, len(inbox), inbox.paused) == (["pause", "resume"], 0, False)


def test_the_low_mark_is_below_the_high_one() -> None:
    with pytest.raises(ValueError, match="below"):
        Inbox(Socket(), high=3, low=3)
