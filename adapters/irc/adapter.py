"""The IRC adapter: the adapter contract over one connection to one IRC network.

This class only answers the contract (start, join, send, aclose) and names what IRC can
do; the work is in its parts, each with one concern: `supervisor` connects, registers
and reconnects; `writer` sends every line through flood control and settles each once
delivered; `incoming` acts on control lines as they arrive and hands chat lines to the
sink in order; `channels` joins and rejoins. What they share of the current connection
is its `connection.Link`. Everything said or understood is built by `translate`,
`registration` and `wire`; these modules only move lines. The adapter owns every task
its parts start and cancels them in `aclose`.

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

import structlog

from imbridge.adapter import Capabilities, Cursors, EventSink, NetworkConfig, Outgoing, RateLimit
from imbridge.adapters.irc import wire
from imbridge.adapters.irc.channels import Channels
from imbridge.adapters.irc.config import IrcConfig, irc_lower
from imbridge.adapters.irc.connection import Link, Session
from imbridge.adapters.irc.incoming import Incoming
from imbridge.adapters.irc.outbound import RELAY_TAG, Mask, NotSendable, max_text_bytes, to_irc
from imbridge.adapters.irc.roster import Roster
from imbridge.adapters.irc.supervisor import Supervisor, fail_all
from imbridge.adapters.irc.writer import Writer
from imbridge.errors import AdapterError, PermanentSendError, RetryableSendError
from imbridge.events import RemoteId
from imbridge.sanitize import clean_nick

log = structlog.get_logger(__name__)


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
            max_text_bytes=max_text_bytes(self._link.mask, config.max_lines),
        )
        self._roster = Roster()
        self._writer = Writer(name, config.flood)
        self._channels = Channels(
            name, config, link=self._link, writer=self._writer, spawn=self._spawn
        )
        self._incoming = Incoming(
            name,
            cursors,
            link=self._link,
            writer=self._writer,
            channels=self._channels,
            roster=self._roster,
        )
        self._supervisor = Supervisor(
            name,
            config,
            link=self._link,
            writer=self._writer,
            channels=self._channels,
            roster=self._roster,
            on_raw=self._incoming.on_raw,
        )
        self._reset()

    def _reset(self) -> None:
        """Fresh run state, so `start` works again after `aclose` (the daemon retries a
        network that failed to start on the same adapter)."""
        self._channels.reset()
        self._writer.reset()
        self._incoming.reset()
        self._link.session = None
        self._link.ready = False
        self._supervisor.first = None
        self._tasks: set[asyncio.Task[None]] = set()
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
    def _session(self) -> Session | None:
        """The current connection's session (tests check it is never replaced)."""
        return self._link.session

    async def start(self, sink: EventSink) -> None:
        if self._tasks:
            raise AdapterError(f"{self.name}: already started")
        self._reset()
        loop = asyncio.get_running_loop()
        first = self._supervisor.first = loop.create_future()
        self._spawn(self._supervisor.run(), "supervise")
        self._spawn(self._incoming.read(sink), "read")
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
        self._channels.rooms[folded] = room
        s = self._link.session
        if s is None or not s.registration.done:
            return  # joined when the connection is up
        if folded in self._channels.joined:
            return
        await self._channels.join(folded)

    async def send(self, item: Outgoing) -> RemoteId:
        if not self.connected:
            raise RetryableSendError(f"{self.name}: not connected")
        folded = irc_lower(item.room)
        # An answer to a private message goes to a nick, which needs no join.
        if folded not in self._channels.joined and not item.event.origin.direct:
            raise RetryableSendError(f"{self.name}: not in {item.room}")
        tags = {RELAY_TAG: ""} if self.tags_enabled else None
        try:
            out = to_irc(
                item.event,
                item.room,
                mask=self._link.mask,
                max_lines=self.config.max_lines,
                tags=tags,
            )
        except (NotSendable, wire.UnsafeLine) as exc:
            raise PermanentSendError(f"{self.name}: {exc}") from None
        if out.truncated_lines:
            log.info(
                "message_truncated", network=self.name, room=item.room, lines=out.truncated_lines
            )
        s = self._link.session
        ids = await self._writer.send(
            out.lines,
            echo=self.echo_enabled and out.is_message,
            target=folded,
            conn=s.conn if s is not None else None,
            timeout=self.config.send_timeout,
        )
        return RemoteId(next((i for i in ids if i), item.txn_id))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._link.ready = False
        s = self._link.session
        if s is not None and s.conn.connected:
            # A polite QUIT, but the socket is closed whatever happens next.
            with contextlib.suppress(Exception):
                s.conn.send_raw(wire.build("QUIT", trailing="imbridge stopping"))
            s.conn.disconnect()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if s is not None and not s.lost.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await s.lost
        if s is not None:
            s.conn.abort()
        fail_all(self._writer, self._channels, RetryableSendError(f"{self.name}: adapter closed"))

    # --- tasks ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"irc:{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
