"""The IRC adapter's I/O: connection, registration, joins, flood-controlled writing,
reading, reconnection. Everything it says or understands is built by `translate`,
`registration` and `wire`; this module only moves lines.

Invariants: one writer per connection sends every post-registration line through the
token bucket and the acknowledgement window (`floodcontrol`); `send` returns only once its
lines were written (or, with `echo-message`, echoed back by the server), raises
RetryableSendError for anything not yet written when the connection drops, and never
drops a line silently. Incoming events reach the sink one at a time, in wire order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog
from irc.client_aio import AioConnection, AioReactor
from irc.connection import AioFactory
from jaraco.stream.buffer import LineBuffer

from imbridge.adapter import Capabilities, Cursors, EventSink, NetworkConfig, Outgoing, RateLimit
from imbridge.adapters.irc import translate, wire
from imbridge.adapters.irc.config import IrcConfig, irc_lower
from imbridge.adapters.irc.floodcontrol import AckWindow
from imbridge.adapters.irc.registration import Registration, RegistrationFailed, is_throttle
from imbridge.errors import AdapterError, PermanentSendError, RetryableSendError
from imbridge.events import RemoteId
from imbridge.intake import Intake
from imbridge.ratelimit import TokenBucket
from imbridge.sanitize import clean_nick

log = structlog.get_logger(__name__)

# Lines the reader task turns into events; the rest is handled as it arrives.
_CHAT = frozenset(
    {"PRIVMSG", "NOTICE", "JOIN", "PART", "QUIT", "NICK", "KICK", "TOPIC", "AWAY", "353"}
)
# RFC 2812 §5.2 errors of a JOIN: channel full, invite only, banned, bad key, no such
# channel, too many channels, needs a registered nick.
_JOIN_ERRORS = frozenset({"403", "405", "471", "473", "474", "475", "477", "489"})
# Errors of a PRIVMSG/NOTICE: no such nick/channel, cannot send to channel.
_SEND_ERRORS = frozenset({"401", "404"})
_INBOX_HIGH, _INBOX_LOW = 10_000, 1_000
_STABLE_SESSION = 30.0  # a connection that lasted this long resets the backoff
_WINDOW_FULL = -1.0


class ConnectionLost(Exception):
    """The connection ended (server closed it, network error, ping timeout)."""


@dataclass(eq=False, slots=True)
class _Out:
    """One line waiting for the writer; `future` resolves when it counts as delivered."""

    line: str
    echo: bool = False
    target: str = ""
    future: asyncio.Future[str] | None = None
    cancelled: bool = False


@dataclass(slots=True)
class _Session:
    """What lives exactly as long as one connection."""

    conn: _Connection
    registration: Registration
    registered: asyncio.Future[None]
    lost: asyncio.Future[None]
    started: float = field(default_factory=time.monotonic)
    last_rx: float = field(default_factory=time.monotonic)
    error: str = ""


class _Connection(AioConnection):  # type: ignore[misc]  # the irc library is untyped
    """The library's asyncio connection, with lines handed over raw (decoded by
    `wire.parse` as UTF-8 with a CP1252 fallback) and tagged lines allowed their own
    4 KiB of tags (IRCv3 message-tags) on top of the 512 bytes."""

    buffer_class = LineBuffer

    def __init__(
        self, reactor: AioReactor, on_line: Callable[[bytes], None], on_lost: Callable[[], None]
    ) -> None:
        super().__init__(reactor)
        self._on_line = on_line
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None

    async def open(self, host: str, port: int, factory: AioFactory) -> None:
        self.buffer = LineBuffer()
        self.server, self.port = host, port
        protocol = self.protocol_class(self, self.reactor.loop)
        self.transport, self.protocol = await factory(protocol, (host, port))
        self.connected = True

    def process_data(self, new_data: bytes) -> None:
        self.buffer.feed(new_data)
        for raw in self.buffer:
            if raw:
                self._on_line(raw)

    def _prep_message(self, string: str) -> bytes:
        if any(c in string for c in "\r\n\0"):
            raise wire.UnsafeLine("CR, LF or NUL in a line")
        data = string.encode("utf-8")
        body = data.split(b" ", 1)[1] if data.startswith(b"@") else data
        if len(body) > wire.MAX_LINE:
            raise wire.UnsafeLine("line longer than 512 bytes")
        return data + b"\r\n"

    def disconnect(self, message: str = "") -> None:
        if not self.connected:
            return
        self.connected = False
        if self.transport is not None:
            self.transport.close()
        self._on_lost()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


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
        self._nick = config.nick
        self._mask = translate.Mask(config.nick)
        self.capabilities = Capabilities(
            edits=False,
            deletes=False,
            replies=False,
            attachments=False,
            formatting="irc",
            max_text_bytes=translate.max_text_bytes(self._mask, config.max_lines),
        )
        self._ssl = _ssl_context(config) if config.tls else None
        self._rooms: dict[str, str] = {}  # folded → as the core named it
        self._roster = translate.Roster()
        self._window = AckWindow(config.flood.max_unacked_lines, config.flood.max_unacked_bytes)
        self._bucket = self._new_bucket()
        self._sink: EventSink | None = None
        self._reset()

    def _reset(self) -> None:
        """Fresh run state, so `start` works again after `aclose` (the daemon retries a
        network that failed to start on the same adapter)."""
        self._joined: set[str] = set()
        self._join_waiters: dict[str, asyncio.Future[None]] = {}
        self._queue: deque[_Out] = deque()
        self._echoes: deque[_Out] = deque()
        # Without echo-message a written line is only delivered once a PONG to a later
        # PING mark proves the server processed it: a line written into a connection the
        # server is closing is otherwise lost without a trace.
        self._unmarked: list[_Out] = []
        self._marked: deque[tuple[str, list[_Out]]] = deque()
        self._wake = asyncio.Event()
        self._window_moved = asyncio.Event()
        self._inbox: asyncio.Queue[wire.Line] = asyncio.Queue()
        self._session: _Session | None = None
        self._ready = False
        self._first: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _new_bucket(self) -> tuple[TokenBucket, TokenBucket]:
        flood, now = self.config.flood, time.monotonic()
        return (
            TokenBucket.full(flood.per_second, flood.burst, now),
            TokenBucket.full(flood.bytes_per_second, flood.burst_bytes, now),
        )

    def _pace(self, size: int) -> float:
        """0 and the tokens taken when a line of `size` bytes may go now, else the wait."""
        lines, octets = self._bucket
        now = time.monotonic()
        wait = lines.take(now)
        if wait > 0:
            return wait
        wait = octets.take(now, min(size, octets.burst))
        if wait > 0:
            lines.tokens += 1  # not sent after all
        return wait

    # --- the contract ---------------------------------------------------------------

    @property
    def identity(self) -> str:
        return clean_nick(self._nick)

    @property
    def connected(self) -> bool:
        s = self._session
        return self._ready and s is not None and s.conn.connected

    @property
    def tags_enabled(self) -> bool:
        s = self._session
        return s is not None and "message-tags" in s.registration.enabled

    @property
    def echo_enabled(self) -> bool:
        s = self._session
        return s is not None and "echo-message" in s.registration.enabled

    async def start(self, sink: EventSink) -> None:
        if self._tasks:
            raise AdapterError(f"{self.name}: already started")
        self._reset()
        self._sink = sink
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._spawn(self._supervise(), "supervise")
        self._spawn(self._read(), "read")
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await asyncio.shield(self._first)
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
        self._rooms[folded] = room
        if self._session is None or not self._session.registration.done:
            return  # joined when the connection is up
        if folded in self._joined:
            return
        await self._join(folded)

    async def send(self, item: Outgoing) -> RemoteId:
        if not self.connected:
            raise RetryableSendError(f"{self.name}: not connected")
        folded = irc_lower(item.room)
        if folded not in self._joined:
            raise RetryableSendError(f"{self.name}: not in {item.room}")
        tags = {translate.RELAY_TAG: ""} if self.tags_enabled else None
        try:
            out = translate.to_irc(
                item.event, item.room, mask=self._mask, max_lines=self.config.max_lines, tags=tags
            )
        except (translate.NotSendable, wire.UnsafeLine) as exc:
            raise PermanentSendError(f"{self.name}: {exc}") from None
        if out.truncated_lines:
            log.info(
                "message_truncated", network=self.name, room=item.room, lines=out.truncated_lines
            )
        loop = asyncio.get_running_loop()
        echo = self.echo_enabled and out.is_message
        entries = [
            _Out(line, echo=echo, target=folded, future=loop.create_future()) for line in out.lines
        ]
        idle = not self._queue
        self._queue.extend(entries)
        s = self._session
        if idle and s is not None and s.conn.connected and self._flush(s.conn) == 0:
            pass  # all written already
        else:
            self._wake.set()
        try:
            async with asyncio.timeout(self.config.send_timeout):
                ids = [await e.future for e in entries if e.future is not None]
        except TimeoutError:
            for e in entries:
                e.cancelled = True
            raise RetryableSendError(f"{self.name}: send timed out") from None
        finally:
            for e in entries:
                if e.future is not None and not e.future.done():
                    e.cancelled = True
                    e.future.cancel()
        return RemoteId(next((i for i in ids if i), item.txn_id))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        s = self._session
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
        self._fail_all(RetryableSendError(f"{self.name}: adapter closed"))

    # --- tasks ----------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"irc:{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self) -> None:
        """Connects, and reconnects with exponential backoff and jitter for ever; a server
        that says we reconnect too fast (or bans us) is left alone for much longer."""
        failures = 0
        while True:
            throttled, started = False, time.monotonic()
            try:
                await self._run_session()
            except RegistrationFailed as exc:
                throttled = exc.throttled
                self._note_failure(str(exc), fatal=not exc.throttled)
            except ssl.SSLCertVerificationError as exc:
                # A certificate that does not verify will not verify on the next try
                # either: the first start fails at once with the reason.
                self._note_failure(f"TLS certificate refused: {exc.verify_message}", fatal=True)
            except (OSError, TimeoutError, ConnectionLost, ssl.SSLError) as exc:
                reason = self._session.error if self._session else ""
                throttled = is_throttle(reason)
                self._note_failure(reason or repr(exc), fatal=False)
            except Exception:  # a bug in one session must not end reconnecting
                log.exception("session_failed", network=self.name)
            finally:
                self._teardown()
            failures = 0 if time.monotonic() - started > _STABLE_SESSION else failures + 1
            c = self.config
            delay = min(c.reconnect_max_delay, c.reconnect_min_delay * 2 ** (failures - 1))
            delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            if throttled:
                delay = max(delay, c.throttled_delay)
            log.warning("reconnecting", network=self.name, delay=round(delay, 2), failures=failures)
            await asyncio.sleep(delay)

    def _note_failure(self, reason: str, *, fatal: bool) -> None:
        log.warning("disconnected", network=self.name, reason=reason)
        first = self._first
        if first is not None and not first.done() and fatal:
            first.set_exception(AdapterError(f"{self.name}: {reason}"))

    async def _run_session(self) -> None:
        loop = asyncio.get_running_loop()
        reg = Registration(self.config)
        conn = _Connection(AioReactor(loop=loop), self._on_raw, self._on_lost)
        s = _Session(conn, reg, loop.create_future(), loop.create_future())
        self._session = s
        self._window.reset()
        self._bucket = self._new_bucket()
        async with asyncio.timeout(self.config.connect_timeout):
            factory = AioFactory(
                ssl=self._ssl, server_hostname=self.config.host if self._ssl else None
            )
            await conn.open(self.config.host, self.config.effective_port, factory)
            for line in reg.start():
                conn.send_raw(line)
            await s.registered
        self._nick = reg.nick
        self._mask = translate.Mask(reg.nick)
        log.info(
            "connected",
            network=self.name,
            host=self.config.host,
            nick=reg.nick,
            caps=sorted(reg.enabled),
        )
        if self.config.nickserv is not None:
            ns = self.config.nickserv
            command = ns.command.replace("{password}", ns.password.get_secret_value())
            conn.send_raw(wire.build("PRIVMSG", ns.service, trailing=command))
        # Owned by this session: cancelled and awaited before it returns, however it ends.
        workers = [loop.create_task(self._write(s)), loop.create_task(self._keepalive(s))]
        try:
            await self._rejoin_all()
            self._ready = True
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            await s.lost
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        raise ConnectionLost(s.error or "connection closed")

    async def _rejoin_all(self) -> None:
        rooms = [f for f in self._rooms if f not in self._joined]
        results = await asyncio.gather(*(self._join(f) for f in rooms), return_exceptions=True)
        for folded, result in zip(rooms, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "join_failed", network=self.name, room=self._rooms[folded], reason=str(result)
                )

    async def _join(self, folded: str) -> None:
        room = self._rooms[folded]
        waiter = self._join_waiters.get(folded)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._join_waiters[folded] = waiter
            key = self.config.key_for(room)
            line = wire.build("JOIN", room, key) if key else wire.build("JOIN", room)
            self._queue.append(_Out(line))
            self._wake.set()
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            raise AdapterError(f"{self.name}: no answer to JOIN {room}") from None
        log.info("joined", network=self.name, room=room)

    async def _write(self, s: _Session) -> None:
        try:
            await self._write_lines(s)
        except Exception as exc:  # logged; the connection is replaced
            log.exception("writer_failed", network=self.name)
            s.error = f"writer failed: {exc!r}"
            s.conn.disconnect()

    async def _write_lines(self, s: _Session) -> None:
        """The only sender after registration: window, then buckets, then the socket."""
        conn = s.conn
        while conn.connected:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._flush(conn)
            if wait == _WINDOW_FULL:
                self._window_moved.clear()
                await self._window_moved.wait()
            elif wait > 0:
                await asyncio.sleep(wait)

    def _flush(self, conn: _Connection) -> float:
        """Writes queued lines while window and buckets allow; returns 0 when the queue is
        empty, else how long to wait (`_WINDOW_FULL`: until a PONG moves the window).
        Also called by `send` itself, so a line sent on an idle connection goes out at
        once, without a task switch to the writer."""
        while self._queue and conn.connected:
            entry = self._queue[0]
            if entry.cancelled:
                self._queue.popleft()
                continue
            size = len(entry.line.encode("utf-8")) + 2
            if not self._window.has_room(size):
                if not self._window.marks:
                    self._mark(conn)
                return _WINDOW_FULL
            delay = self._pace(size)
            if delay > 0:
                return delay
            self._queue.popleft()
            conn.send_raw(entry.line)
            self._window.sent(size)
            if self._window.wants_mark():
                self._mark(conn)
            if entry.echo:
                self._echoes.append(entry)
            elif entry.future is not None:
                self._unmarked.append(entry)
        if self._unmarked and conn.connected:
            self._mark(conn)  # ask the server to confirm what was just written
        return 0.0

    def _mark(self, conn: _Connection) -> None:
        token = self._window.mark()
        if self._unmarked:
            self._marked.append((token, self._unmarked))
            self._unmarked = []
        line = wire.build("PING", trailing=token)
        conn.send_raw(line)
        self._bucket[1].tokens -= len(line) + 2  # the server counts its bytes too

    async def _keepalive(self, s: _Session) -> None:
        """PING when idle; a server silent for two intervals is gone (no FIN on a dead
        route): drop the connection so the supervisor makes a new one."""
        interval = self.config.ping_interval
        while s.conn.connected:
            await asyncio.sleep(interval / 4)
            idle = time.monotonic() - s.last_rx
            if idle >= 2 * interval:
                s.error = f"ping timeout ({idle:.0f}s)"
                s.conn.disconnect()
            elif idle >= interval:
                self._mark(s.conn)

    async def _read(self) -> None:
        """Hands incoming events to the sink in order, without waiting for each commit."""
        if self._sink is None:
            return
        intake = Intake(self._sink)
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
        ref = line.tags.get(translate.REPLY_TAG)
        if ref:
            reply_to = await self.cursors.event_id(RemoteId(ref))
        ctx = translate.Inbound(
            network=self.name, own_nick=self._nick, rooms=self._rooms, reply_to=reply_to
        )
        for event in translate.to_core(line, ctx, self._roster):
            await intake.put(event)

    # --- incoming lines, as they arrive -----------------------------------------------

    def _on_raw(self, raw: bytes) -> None:
        s = self._session
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
            self._control(s, line)
            if cmd in _CHAT:
                self._inbox.put_nowait(line)
                if self._inbox.qsize() > _INBOX_HIGH and s.conn.transport is not None:
                    s.conn.transport.pause_reading()

    def _register(self, s: _Session, line: wire.Line) -> None:
        try:
            for out in s.registration.on_line(line):
                s.conn.send_raw(out)
        except RegistrationFailed as exc:
            if not s.registered.done():
                s.registered.set_exception(exc)
            return
        if s.registration.done and not s.registered.done():
            s.registered.set_result(None)

    def _control(self, s: _Session, line: wire.Line) -> None:
        cmd, own = line.command, irc_lower(self._nick)
        is_self = irc_lower(line.nick) == own
        if cmd == "PONG":
            token = line.param(len(line.params) - 1)
            if self._window.acked(token):
                self._window_moved.set()
                self._confirm_through(token)
        elif cmd in ("PRIVMSG", "NOTICE") and is_self:
            self._echoed(line)
        elif cmd == "JOIN" and is_self:
            self._self_joined(line)
        elif cmd == "PART" and is_self:
            self._joined.discard(irc_lower(line.param(0)))
        elif cmd == "KICK" and irc_lower(line.param(1)) == own:
            self._kicked(line)
        elif cmd == "NICK" and is_self:
            self._nick = line.param(0) or self._nick
            self._mask = translate.Mask(self._nick, self._mask.user, self._mask.host)
        elif cmd in _JOIN_ERRORS:
            waiter = self._join_waiters.get(irc_lower(line.param(1)))
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    AdapterError(f"cannot join {line.param(1)}: {line.command} {line.params[-1]}")
                )
        elif cmd in _SEND_ERRORS:
            self._send_refused(line)

    def _self_joined(self, line: wire.Line) -> None:
        folded = irc_lower(line.param(0))
        self._joined.add(folded)
        if line.source is not None and line.source.user:
            self._mask = translate.Mask(self._nick, line.source.user, line.source.host)
        waiter = self._join_waiters.get(folded)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _kicked(self, line: wire.Line) -> None:
        folded = irc_lower(line.param(0))
        self._joined.discard(folded)
        log.warning(
            "kicked", network=self.name, room=line.param(0), by=line.nick, reason=line.param(2)
        )
        if self.config.rejoin_on_kick and folded in self._rooms:
            self._spawn(self._rejoin_later(folded), "rejoin")

    async def _rejoin_later(self, folded: str) -> None:
        await asyncio.sleep(self.config.rejoin_delay)
        if self.connected and folded not in self._joined:
            try:
                await self._join(folded)
            except AdapterError as exc:
                log.error(
                    "join_failed", network=self.name, room=self._rooms[folded], reason=str(exc)
                )

    def _echoed(self, line: wire.Line) -> None:
        """echo-message: the server relayed our line; it counts as delivered now."""
        if self._echoes:
            entry = self._echoes.popleft()
            if entry.future is not None and not entry.future.done():
                entry.future.set_result(line.tags.get("msgid", ""))

    def _send_refused(self, line: wire.Line) -> None:
        target = irc_lower(line.param(1))
        head = self._echoes[0] if self._echoes else None
        if head is None or head.target != target:
            log.warning(
                "send_refused", network=self.name, target=line.param(1), reason=line.params[-1]
            )
            return
        self._echoes.popleft()
        error: AdapterError
        if target in self._joined:
            error = PermanentSendError(f"{self.name}: {line.command} {line.params[-1]}")
        else:
            error = RetryableSendError(f"{self.name}: not in {line.param(1)}")
        if head.future is not None and not head.future.done():
            head.future.set_exception(error)

    def _on_lost(self) -> None:
        s = self._session
        self._ready = False
        if s is not None and not s.lost.done():
            s.lost.set_result(None)
        if s is not None and not s.registered.done():
            s.registered.set_exception(ConnectionLost(s.error or "connection closed"))

    def _resume_reading(self) -> None:
        s = self._session
        if s is not None and s.conn.transport is not None and s.conn.connected:
            with contextlib.suppress(RuntimeError):
                s.conn.transport.resume_reading()

    def _teardown(self) -> None:
        """After a connection: nothing joined, nothing in flight; whatever was not yet
        written goes back to the outbox (RetryableSendError), nothing is lost here."""
        self._ready = False
        s = self._session
        if s is not None:
            s.conn.disconnect()
            for fut in (s.registered, s.lost):
                if fut.done() and not fut.cancelled():
                    fut.exception()  # retrieved: never "exception was never retrieved"
        self._joined.clear()
        self._roster.clear()
        self._fail_all(RetryableSendError(f"{self.name}: connection lost"))

    def _confirm_through(self, token: str) -> None:
        """The server answered the PING `token`: every line written before it (and
        before earlier marks) was processed, so those sends are delivered."""
        if not any(t == token for t, _ in self._marked):
            return
        while self._marked:
            t, entries = self._marked.popleft()
            for entry in entries:
                if entry.future is not None and not entry.future.done():
                    entry.future.set_result("")
            if t == token:
                return

    def _fail_all(self, error: AdapterError) -> None:
        unconfirmed = [e for _, entries in self._marked for e in entries] + self._unmarked
        self._marked.clear()
        self._unmarked = []
        for entry in (*self._queue, *self._echoes, *unconfirmed):
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(error)
                entry.future.exception()
        self._queue.clear()
        self._echoes.clear()
        for waiter in self._join_waiters.values():
            if not waiter.done():
                waiter.set_exception(AdapterError(str(error)))
                waiter.exception()
        self._join_waiters.clear()


def _ssl_context(config: IrcConfig) -> ssl.SSLContext:
    """System CAs (or `tls_ca_file`) with hostname checks, unless `tls_verify: false`."""
    ctx = ssl.create_default_context(cafile=str(config.tls_ca_file) if config.tls_ca_file else None)
    if not config.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.tls_client_cert is not None:
        ctx.load_cert_chain(
            str(config.tls_client_cert),
            str(config.tls_client_key) if config.tls_client_key else None,
        )
    return ctx
