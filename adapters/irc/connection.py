"""One connection to the IRC server, and what the adapter's parts share about it.

`Connection` is an asyncio protocol that hands each received line over raw and makes a
last check at the socket: nothing holding CR, LF or NUL, or longer than 512 bytes, is
ever written, whatever built it. It is all the adapter needs of a transport, so the `irc`
library (with its jaraco, tempora and dateutil dependencies, about 3.5 MiB resident) is
not loaded by the daemon. `ConnectionState` is what lives exactly as long as one
connection; `Link` is the adapter's view of the current one (which session, whether it
is ready for sends, under which nick and mask), read and updated by the session, the
receiver and the adapter alike.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.proto.registration import Registration


class ConnectionLost(Exception):
    """The connection ended (server closed it, network error, ping timeout)."""


class Connection(asyncio.Protocol):
    """Lines in, split on LF with an optional CR before it and handed over raw (decoded
    by `wire.parse` as UTF-8 with a CP1252 fallback); lines out, checked. Tagged lines
    are allowed their own 4 KiB of tags (IRCv3 message-tags) on top of the 512 bytes."""

    def __init__(self, on_line: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        self._on_line = on_line
        self._on_lost = on_lost
        self._pending = b""
        self.transport: asyncio.Transport | None = None
        self.connected = False

    async def open(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(
            lambda: self, host, port, ssl=tls, server_hostname=host if tls else None
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # create_connection's: a stream
        self.connected = True

    def data_received(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            raw = line.removesuffix(b"\r")
            if raw:
                self._on_line(raw)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disconnect()

    def send_raw(self, string: str) -> None:
        if self.transport is None:
            raise ConnectionLost("not connected")
        self.transport.write(self._prep_message(string))

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


@dataclass(slots=True)
class ConnectionState:
    """What lives exactly as long as one connection."""

    conn: Connection
    registration: Registration
    registered: asyncio.Future[None]
    lost: asyncio.Future[None]
    started: float = field(default_factory=time.monotonic)
    last_rx: float = field(default_factory=time.monotonic)
    error: str = ""
    whox: bool = False
    """The server announced WHOX (ISUPPORT): the relay asks it who holds which account."""


@dataclass(slots=True)
class Link:
    """The current connection as the adapter's parts see it. `nick` and `mask` outlive a
    connection: they are the relay's until the next registration says otherwise."""

    nick: str
    mask: Mask
    current: ConnectionState | None = None
    ready: bool = False  # registered and rejoined: sends may go out

    @property
    def connected(self) -> bool:
        s = self.current
        return self.ready and s is not None and s.conn.connected

    def enabled(self, capability: str) -> bool:
        """Whether the current connection negotiated `capability` (IRCv3 CAP)."""
        s = self.current
        return s is not None and capability in s.registration.enabled


def ssl_context(config: IrcConfig) -> ssl.SSLContext:
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
