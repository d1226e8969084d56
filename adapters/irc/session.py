"""Keeps the relay on the network: one connection after another, for as long as the
adapter runs.

A session opens the socket, registers, identifies to NickServ, rejoins every channel,
and lives until the connection ends; keep-alive PINGs notice a dead route that never
sends a FIN. Then the session is torn down, and the next one starts after an
exponential backoff with jitter, much longer for a server that says the relay
reconnects too fast (or bans it). Invariant of the teardown: after a connection nothing
counts as joined or in flight, and whatever was not confirmed fails with
RetryableSendError, so the outbox keeps it and nothing is lost here.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable

import structlog
from irc.client_aio import AioReactor
from irc.connection import AioFactory

from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.connection import (
    Connection,
    ConnectionLost,
    ConnectionState,
    Link,
    ssl_context,
)
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.proto.registration import Registration, RegistrationFailed, is_throttle
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.rooms import Rooms
from imbridge.adapters.irc.send import Writer
from imbridge.errors import AdapterError, RetryableSendError

log = structlog.get_logger(__name__)

_STABLE_SESSION = 30.0  # a connection that lasted this long resets the backoff


class Session:
    """Runs one connection after another; `first` tells `start` how the first login went."""

    def __init__(
        self,
        name: str,
        config: IrcConfig,
        *,
        link: Link,
        writer: Writer,
        rooms: Rooms,
        roster: Roster,
        on_raw: Callable[[bytes], None],
    ) -> None:
        self.name = name
        self.config = config
        self._ssl = ssl_context(config) if config.tls else None
        self._link = link
        self._writer = writer
        self._rooms = rooms
        self._roster = roster
        self._on_raw = on_raw
        self.first: asyncio.Future[None] | None = None

    async def run(self) -> None:
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
                reason = self._link.current.error if self._link.current else ""
                throttled = is_throttle(reason)
                self._note_failure(reason or repr(exc), fatal=False)
            except Exception:  # a bug in one session must not end reconnecting
                log.exception("session_failed", network=self.name)
            finally:
                self.teardown()
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
        first = self.first
        if first is not None and not first.done() and fatal:
            first.set_exception(AdapterError(f"{self.name}: {reason}"))

    async def _run_session(self) -> None:
        loop = asyncio.get_running_loop()
        reg = Registration(self.config)
        conn = Connection(AioReactor(loop=loop), self._on_raw, self.on_lost)
        s = ConnectionState(conn, reg, loop.create_future(), loop.create_future())
        self._link.current = s
        self._writer.new_connection()
        async with asyncio.timeout(self.config.connect_timeout):
            factory = AioFactory(
                ssl=self._ssl, server_hostname=self.config.host if self._ssl else None
            )
            await conn.open(self.config.host, self.config.effective_port, factory)
            for line in reg.start():
                conn.send_raw(line)
            await s.registered
        self._link.nick = reg.nick
        self._link.mask = Mask(reg.nick)
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
        workers = [loop.create_task(self._writer.run(s)), loop.create_task(self._keepalive(s))]
        try:
            await self._rooms.rejoin_all()
            self._link.ready = True
            if self.first is not None and not self.first.done():
                self.first.set_result(None)
            await s.lost
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        raise ConnectionLost(s.error or "connection closed")

    async def _keepalive(self, s: ConnectionState) -> None:
        """PING when idle; a server silent for two intervals is gone (no FIN on a dead
        route): drop the connection so `run` makes a new one."""
        interval = self.config.ping_interval
        while s.conn.connected:
            await asyncio.sleep(interval / 4)
            idle = time.monotonic() - s.last_rx
            if idle >= 2 * interval:
                s.error = f"ping timeout ({idle:.0f}s)"
                s.conn.disconnect()
            elif idle >= interval:
                self._writer.mark(s.conn)

    def on_lost(self) -> None:
        """The connection closed, whichever side closed it."""
        s = self._link.current
        self._link.ready = False
        if s is not None and not s.lost.done():
            s.lost.set_result(None)
        if s is not None and not s.registered.done():
            s.registered.set_exception(ConnectionLost(s.error or "connection closed"))

    def teardown(self) -> None:
        """After a connection: nothing joined, nothing in flight; whatever was not yet
        written goes back to the outbox (RetryableSendError), nothing is lost here."""
        self._link.ready = False
        s = self._link.current
        if s is not None:
            s.conn.disconnect()
            for fut in (s.registered, s.lost):
                if fut.done() and not fut.cancelled():
                    fut.exception()  # retrieved: never "exception was never retrieved"
        self._rooms.joined.clear()
        self._roster.clear()
        fail_all(self._writer, self._rooms, RetryableSendError(f"{self.name}: connection lost"))


def fail_all(writer: Writer, rooms: Rooms, error: AdapterError) -> None:
    """Every line and JOIN still waiting fails with `error`."""
    writer.fail_all(error)
    rooms.fail_all(error)
