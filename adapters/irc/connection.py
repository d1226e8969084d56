"""One connection to the IRC server, and what the adapter's parts share about it.

`Connection` is the `irc` library's asyncio connection with lines handed over raw and a
last check at the socket: nothing holding CR, LF or NUL, or longer than 512 bytes, is
ever written, whatever built it. `ConnectionState` is what lives exactly as long as one
connection; `Link` is the adapter's view of the current one (which session, whether it
is ready for sends, under which nick and mask), read and updated by the session, the
receiver and the adapter alike.
"""

from __future__ import annotations

import asyncio
import linecache
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from irc.client_aio import AioConnection, AioReactor
from irc.connection import AioFactory
from jaraco.stream.buffer import LineBuffer

from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.proto.registration import Registration


def _forget_sources_read_by_irc() -> None:
    """`irc.events` finds its data file with `importlib_resources.files()`, which walks
    the importer's stack with `inspect.stack()` and so reads the source of every module on
    it into `linecache`: about 0.7 MiB the daemon would keep for good. Entries read from
    a file go (linecache reads the file again when a traceback needs it); generated ones,
    which have no file to read back, stay."""
    for path, entry in list(linecache.cache.items()):
        if len(entry) == 4 and entry[1] is not None:
            del linecache.cache[path]


_forget_sources_read_by_irc()


class ConnectionLost(Exception):
    """The connection ended (server closed it, network error, ping timeout)."""


class Connection(AioConnection):  # type: ignore[misc]  # the irc library is untyped
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
    relaymsg: str = ""
    """The separator of the server's RELAYMSG ISUPPORT token (IRCv3 draft/relaymsg)."""


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
