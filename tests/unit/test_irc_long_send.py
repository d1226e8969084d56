"""A long message toward IRC goes out whole, and a send cut part-way (the connection
dropped) goes on from the first line the server had not confirmed, instead of repeating
the lines the channel already read. The adapter's own writer and transmitter, over a
stand-in for the socket that records what would have been written."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from imbridge.adapter import Outgoing
from imbridge.adapters.irc.config import FloodConfig, IrcConfig
from imbridge.adapters.irc.connection import ConnectionState, Link
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.rooms import Rooms
from imbridge.adapters.irc.send import Transmitter, Writer
from imbridge.errors import RetryableSendError
from imbridge.events import EventId, Message, Origin, Sender
from imbridge.testing import eventually

FLOOD = FloodConfig(
    burst=1000,
    per_second=1000,
    burst_bytes=1_000_000,
    bytes_per_second=1_000_000,
    max_unacked_lines=4,
    max_unacked_bytes=1_000_000,
)


class Socket:
    """What the writer wrote, line by line; stands in for the library's connection."""

    def __init__(self) -> None:
        self.connected = True
        self.lines: list[str] = []

    def send_raw(self, line: str) -> None:
        self.lines.append(line)

    def disconnect(self) -> None:
        self.connected = False

    def said(self) -> list[str]:
        return [line.split(" :", 1)[1] for line in self.lines if line.startswith("PRIVMSG")]

    def pings(self) -> list[str]:
        return [line.split(" :", 1)[1] for line in self.lines if line.startswith("PING")]


def connected(link: Link, writer: Writer) -> Socket:
    socket = Socket()
    state = SimpleNamespace(conn=socket, registration=SimpleNamespace(enabled=set()))
    link.current = cast(ConnectionState, state)
    link.ready = True
    writer.reset()
    writer.new_connection()
    return socket


def item(lines: int) -> Outgoing:
    origin = Origin(network="mx", room="!r", sender=Sender(id="@a:x", name="alice"))
    text = "\n".join(f"line {i}" for i in range(lines))
    event = Message(id=EventId("e1"), origin=origin, text=text)
    return Outgoing(room="#c", event=event, txn_id="txn1")


async def test_a_cut_send_resumes_after_the_lines_the_server_confirmed() -> None:
    config = IrcConfig(type="irc", host="irc.example", nick="relay", flood=FLOOD)
    link = Link(nick="relay", mask=Mask("relay"))
    writer = Writer("irc", FLOOD)
    rooms = cast(Rooms, cast(Any, SimpleNamespace(joined={"#c"})))
    transmitter = Transmitter("irc", config, link=link, rooms=rooms, writer=writer)
    first = connected(link, writer)
    run = asyncio.create_task(writer.run(cast(ConnectionState, link.current)))
    sending = asyncio.create_task(transmitter.send(item(12)))
    await eventually(first.pings, what="a PING mark after the first lines")
    writer.ponged(first.pings()[0])  # the server processed what came before it
    marked = first.lines.index(f"PING :{first.pings()[0]}")
    confirmed = [line.split(" :", 1)[1] for line in first.lines[:marked]]
    await eventually(lambda: len(first.pings()) > 1, what="the next lines and their mark")
    first.connected = False  # the connection drops before the second mark is answered
    writer.fail_all(RetryableSendError("irc: connection lost"))
    with pytest.raises(RetryableSendError):
        await sending
    await run

    second = connected(link, writer)
    run = asyncio.create_task(writer.run(cast(ConnectionState, link.current)))
    sending = asyncio.create_task(transmitter.send(item(12)))
    while not sending.done():
        await eventually(lambda: second.pings() or sending.done(), what="a mark or the end")
        for token in second.pings():
            writer.ponged(token)
        await asyncio.sleep(0)
    assert await sending == "txn1"
    second.connected = False
    writer._wake.set()
    await run
    assert confirmed == ["line 0", "line 1"]
    # Nothing the server confirmed is said again; the rest follows, in order, to the end.
    assert second.said() == [f"line {i}" for i in range(len(confirmed), 12)]
