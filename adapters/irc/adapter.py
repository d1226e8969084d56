"""The IRC adapter: the adapter contract over one connection to one IRC network.

This class only answers the contract (start, join, send, aclose) and names what IRC can
do; the work is in its parts, each with one concern: `session` connects, registers and
reconnects; `send` translates each item and writes its lines through flood control,
settling each once delivered; `receive` acts on control lines as they arrive and hands
chat lines to the sink in order; `rooms` joins and rejoins. What they share of the
current connection is its `connection.Link`. Everything said or understood is built by
`proto` (translate, registration, wire); these modules only move lines. The adapter owns
every task its parts start, in one `TaskTree`, and closes it in `aclose`.

Invariants: `send` returns only once its lines were written (or, with `echo-message`,
echoed back by the server), raises RetryableSendError for anything not yet written when
the connection drops, and never drops a line silently. Incoming events reach the sink
one at a time, in wire order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, ClassVar

from imbridge.adapter import Capabilities, Cursors, EventSink, NetworkConfig, Outgoing, RateLimit
from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.connection import ConnectionState, Link
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.lines import Mask, line_bytes
from imbridge.adapters.irc.proto.names import irc_lower
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.reactions import ReactionSender
from imbridge.adapters.irc.receive import Receiver
from imbridge.adapters.irc.rooms import Rooms
from imbridge.adapters.irc.send import Transmitter, Writer
from imbridge.adapters.irc.session import Session, fail_all
from imbridge.errors import AdapterError, RetryableSendError
from imbridge.events import Reaction, RemoteId
from imbridge.sanitize import clean_nick
from imbridge.tasks import TaskTree

LONGEST_TEXT = 65_536
"""Bytes of one relayed message: above what any other network sends in one (a Matrix
event is at most 64 KiB), so nothing is cut on its way to IRC (see `proto.lines`)."""


class IrcAdapter:
    """Relays the channels the core joins on one IRC network, through one connection."""

    config_model: ClassVar[type[NetworkConfig]] = IrcConfig
    # The core's per-room limit; the real flood control is this adapter's, per connection.
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=50.0, burst=300)

    def __init__(self, name: str, config: NetworkConfig, cursors: Cursors) -> None:
        if not isinstance(config, IrcConfig):
            raise TypeError("IrcAdapter needs an IrcConfig")
        self.name = name
        self.config = config
        self.cursors = cursors
        self._link = Link(nick=config.nick, mask=Mask(config.nick))
        self.capabilities = Capabilities(
            edits=False,
            deletes=False,
            replies=False,
            attachments=False,
            formatting="irc",
            max_text_bytes=LONGEST_TEXT,
            max_lines=config.max_lines,
            line_bytes=line_bytes(self._link.mask),
            edit_window=config.edit_window,
            reactions="native",  # +draft/react, or gathered lines (`reactions`)
            direct_sends=True,  # a PRIVMSG from the relay naming the sender
        )
        self._roster = Roster()
        self._writer = Writer(name, config.flood)
        self._rooms = Rooms(name, config, link=self._link, writer=self._writer, spawn=self._spawn)
        self._transmitter = Transmitter(
            name, config, link=self._link, rooms=self._rooms, writer=self._writer,
            roster=self._roster,
        )  # fmt: skip
        self._reactions = ReactionSender(
            name, config, link=self._link, rooms=self._rooms, writer=self._writer
        )
        self._receiver = Receiver(
            name,
            cursors,
            link=self._link,
            writer=self._writer,
            rooms=self._rooms,
            roster=self._roster,
        )
        self._session = Session(
            name,
            config,
            link=self._link,
            writer=self._writer,
            rooms=self._rooms,
            roster=self._roster,
            on_raw=self._receiver.on_raw,
        )
        self._tasks: TaskTree | None = None
        self._closed = False

    def _reset(self) -> None:
        """Fresh run state, so `start` works again after `aclose` (the daemon retries a
        network that failed to start on the same adapter)."""
        self._rooms.reset()
        self._writer.reset()
        self._receiver.reset()
        self._link.current = None
        self._link.ready = False
        self._session.first = None
        self._closed = False

    # --- the contract ---------------------------------------------------------------

    @property
    def identity(self) -> str:
        return clean_nick(self._link.nick)

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def tags_enabled(self) -> bool:
        return self._link.enabled("message-tags")

    @property
    def echo_enabled(self) -> bool:
        return self._link.enabled("echo-message")

    @property
    def _connection(self) -> ConnectionState | None:
        """The current connection (tests check it is never replaced)."""
        return self._link.current

    async def start(self, sink: EventSink) -> None:
        if self._tasks is not None:
            raise AdapterError(f"{self.name}: already started")
        self._reset()
        self._tasks = await TaskTree(f"irc:{self.name}").__aenter__()
        first = self._session.first = asyncio.get_running_loop().create_future()
        self._spawn(self._session.run(), "supervise")
        self._spawn(self._receiver.read(sink), "read")
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await asyncio.shield(first)
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, TimeoutError):
                raise AdapterError(
                    f"{self.name}: not logged in to {self.config.host} after "
                    f"{self.config.connect_timeout:g}s"
                ) from None
            raise

    async def join(self, room: str) -> None:
        folded = irc_lower(room)
        self._rooms.rooms[folded] = room
        s = self._link.current
        if s is None or not s.registration.done:
            return  # joined when the connection is up
        if folded in self._rooms.joined:
            return
        await self._rooms.join(folded)

    async def leave(self, room: str) -> None:
        self._rooms.leave(irc_lower(room))

    async def send(self, item: Outgoing) -> RemoteId:
        if isinstance(item.event, Reaction):
            return await self._reactions.send(item, item.event)
        return await self._transmitter.send(item)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._link.ready = False
        s = self._link.current
        if s is not None and s.conn.connected:
            # A polite QUIT, but the socket is closed whatever happens next.
            with contextlib.suppress(Exception):
                s.conn.send_raw(wire.build("QUIT", trailing="imbridge stopping"))
            s.conn.disconnect()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.aclose()
        if s is not None and not s.lost.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await s.lost
        if s is not None:
            s.conn.abort()
        fail_all(self._writer, self._rooms, RetryableSendError(f"{self.name}: adapter closed"))

    # --- tasks ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A task of this adapter's tree; after `aclose` there is none to start."""
        if self._tasks is None or self._tasks.closed:
            coro.close()
            return
        self._tasks.spawn(coro, name=f"irc:{self.name}:{name}", network=self.name)
