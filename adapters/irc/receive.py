"""Lines from the server, in two speeds.

Control lines are handled as they arrive, in the connection's callback: PING answered,
registration fed, PONG marks and echoes settling sends (`send.Writer`), the relay's own
JOIN, PART, KICK and NICK, and the errors of a JOIN or a send. Chat lines are queued for
the reader task, which turns them into events (`proto.translate`) and hands them to the
sink one at a time, in wire order, whatever a single line or the sink does. While the queue is long
the socket stops being read, so a slow sink slows the server down instead of filling
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from imbridge.adapter import Cursors, EventSink
from imbridge.adapters.irc.connection import ConnectionState, Link
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.proto.names import irc_lower
from imbridge.adapters.irc.proto.registration import RegistrationFailed, is_throttle
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.proto.translate import REPLY_TAG, WHOX_MARK, Context, to_core
from imbridge.adapters.irc.rooms import JOIN_ERRORS, Rooms
from imbridge.adapters.irc.send import Writer
from imbridge.events import RemoteId
from imbridge.intake import Intake

log = structlog.get_logger(__name__)

# Lines the reader task turns into events; the rest is handled as it arrives.
_CHAT = frozenset(
    {"PRIVMSG", "NOTICE", "TAGMSG", "JOIN", "PART", "QUIT", "NICK", "KICK", "TOPIC", "AWAY", "353"}
    | {"ACCOUNT", "354"}
)
# Errors of a PRIVMSG/NOTICE: no such nick/channel, cannot send to channel.
_SEND_ERRORS = frozenset({"401", "404"})
_INBOX_HIGH, _INBOX_LOW = 10_000, 1_000


class Receiver:
    """Handles each line of the current connection; `read` is the reader task."""

    def __init__(
        self,
        name: str,
        cursors: Cursors,
        *,
        link: Link,
        writer: Writer,
        rooms: Rooms,
        roster: Roster,
    ) -> None:
        self.name = name
        self.cursors = cursors
        self._link = link
        self._writer = writer
        self._rooms = rooms
        self._roster = roster
        self.reset()

    def reset(self) -> None:
        """No line waiting: a fresh run (`start` after `aclose`)."""
        self._inbox: asyncio.Queue[wire.Line] = asyncio.Queue()

    # --- as they arrive -------------------------------------------------------------

    def on_raw(self, raw: bytes) -> None:
        s = self._link.current
        line = wire.parse(raw)
        if s is None or line is None:
            return
        s.last_rx = time.monotonic()
        cmd = line.command
        if cmd == "PING":
            s.conn.send_raw(wire.build("PONG", trailing=line.param(len(line.params) - 1)))
        elif cmd == "ERROR":
            s.error = line.param(0)
            if not s.registered.done():
                s.registered.set_exception(
                    RegistrationFailed(
                        f"server closed the link: {s.error}", throttled=is_throttle(s.error)
                    )
                )
        elif not s.registration.done:
            self._register(s, line)
        else:
            self._control(line)
            if cmd in _CHAT:
                self._inbox.put_nowait(line)
                if self._inbox.qsize() > _INBOX_HIGH and s.conn.transport is not None:
                    s.conn.transport.pause_reading()

    def _register(self, s: ConnectionState, line: wire.Line) -> None:
        try:
            for out in s.registration.on_line(line):
                s.conn.send_raw(out)
        except RegistrationFailed as exc:
            if not s.registered.done():
                s.registered.set_exception(exc)
            return
        if s.registration.done and not s.registered.done():
            s.registered.set_result(None)

    def _control(self, line: wire.Line) -> None:
        link = self._link
        cmd, own = line.command, irc_lower(link.nick)
        is_self = irc_lower(line.nick) == own
        if cmd == "PONG":
            self._writer.ponged(line.param(len(line.params) - 1))
        elif cmd in ("PRIVMSG", "NOTICE") and is_self:
            self._writer.echoed(line)
        elif cmd == "JOIN" and is_self:
            self._self_joined(line)
        elif cmd == "PART" and is_self:
            self._rooms.joined.discard(irc_lower(line.param(0)))
        elif cmd == "KICK" and irc_lower(line.param(1)) == own:
            self._rooms.kicked(line)
        elif cmd == "NICK" and is_self:
            link.nick = line.param(0) or link.nick
            link.mask = Mask(link.nick, link.mask.user, link.mask.host)
        elif cmd == "005" and link.current is not None:
            link.current.whox |= any(t.split("=")[0] == "WHOX" for t in line.params[1:])
            for token in line.params[1:-1]:
                name, _, value = token.partition("=")
                if name == "RELAYMSG":
                    link.current.relaymsg = value or "/"
        elif cmd in JOIN_ERRORS:
            self._rooms.join_refused(line)
        elif cmd in _SEND_ERRORS:
            self._writer.refused(line, self._rooms.joined)

    def _self_joined(self, line: wire.Line) -> None:
        link = self._link
        if line.source is not None and line.source.user:
            link.mask = Mask(link.nick, line.source.user, line.source.host)
        self._rooms.self_joined(irc_lower(line.param(0)))
        s = link.current
        if s is not None and s.whox:  # who is logged in as whom, for `proto.translate`
            s.conn.send_raw(wire.build("WHO", line.param(0), f"%tna,{WHOX_MARK}"))

    # --- in order, to the sink ------------------------------------------------------

    async def read(self, sink: EventSink) -> None:
        """Hands incoming events to the sink in order, without waiting for each commit."""
        intake = Intake(sink)
        try:
            while True:
                line = await self._inbox.get()
                if self._inbox.qsize() < _INBOX_LOW:
                    self._resume_reading()
                try:
                    await self._deliver(line, intake)
                except Exception:  # one bad line or sink failure never stops reading
                    log.exception("inbound_failed", network=self.name, command=line.command)
        finally:
            await intake.aclose()

    async def _deliver(self, line: wire.Line, intake: Intake) -> None:
        reply_to = None
        ref = line.tags.get(REPLY_TAG)
        if ref:
            reply_to = await self.cursors.event_id(RemoteId(ref))
        ctx = Context(
            network=self.name,
            own_nick=self._link.nick,
            rooms=self._rooms.rooms,
            reply_to=reply_to,
            account_tag=self._link.enabled("account-tag"),
            accounts=self._roster.accounts,
            relaymsg_separator=self._link.current.relaymsg if self._link.current else "",
        )
        for event in to_core(line, ctx, self._roster):
            await intake.put(event)

    def _resume_reading(self) -> None:
        s = self._link.current
        if s is not None and s.conn.transport is not None and s.conn.connected:
            with contextlib.suppress(RuntimeError):
                s.conn.transport.resume_reading()
