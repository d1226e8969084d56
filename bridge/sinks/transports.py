"""Where a batch goes: a file, an HTTP collector, a syslog server. `send` returns once the
batch is as safe as that transport can tell, and raises otherwise; the runner advances
the sink's cursor only after it returns, so a failure means the batch is sent again.

What "safe" means differs, and docs/hooks.md says so: a file is flushed and fsynced; an
HTTP collector answered 2xx; syslog over TCP has no acknowledgement at all (that is why
RELP exists), so a batch counts as received once the peer's TCP stack has acknowledged
every byte (the kernel's unsent-bytes count, SIOCOUTQ, is zero) and the connection is
still open a moment later. A receiver that dies holding acknowledged but unread bytes can
still lose them; one that closes its connection, or is stopped, cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import ssl
import struct
import termios
from typing import Protocol

import aiohttp

from imbridge.config.schema import Sink
from imbridge.sinks import formats
from imbridge.sinks.feed import Shipped

CONFIRM_GRACE = 0.05
"""After the peer acknowledged a batch: how long the connection must stay up."""


class Transport(Protocol):
    async def send(self, records: list[Shipped]) -> None: ...

    async def aclose(self) -> None: ...


class FileTransport:
    """JSON lines appended to `path`, rotated by size (`path.1` is the newest old one),
    written in a worker thread."""

    def __init__(self, config: Sink) -> None:
        if config.path is None:
            raise ValueError("a file sink needs a path")
        self.path = config.path
        self.max_bytes = config.max_bytes
        self.keep = config.keep

    async def send(self, records: list[Shipped]) -> None:
        await asyncio.to_thread(self._write, formats.lines(records))

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            with contextlib.suppress(FileNotFoundError):
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))

    async def aclose(self) -> None:
        return None


def _tls_context(config: Sink) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if not config.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HttpTransport:
    """Batches POSTed to a collector; any answer but 2xx is a failure."""

    def __init__(self, config: Sink) -> None:
        if config.url is None:
            raise ValueError("an http sink needs a url")
        self.config = config
        self.url = config.url
        self._session: aiohttp.ClientSession | None = None
        self._host = formats.hostname()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            c = self.config
            headers = {"User-Agent": "imbridge-sink/1"}
            if c.token is not None:
                headers["Authorization"] = f"{c.auth_scheme} {c.token.get_secret_value()}"
            headers["Content-Type"] = (
                "application/x-ndjson" if c.format == "bulk" else "application/json"
            )
            ssl_ctx = _tls_context(c) if self.url.startswith("https:") else False
            self._session = aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(limit=1, ssl=ssl_ctx)
            )
        return self._session

    def _body(self, records: list[Shipped]) -> bytes:
        match self.config.format:
            case "hec":
                return formats.hec(records, self._host)
            case "bulk":
                return formats.bulk(records)
            case _:
                return formats.lines(records)

    async def send(self, records: list[Shipped]) -> None:
        session = self._client()
        # Encoding a batch (hec and bulk format every record) stays off the relay's loop.
        data = await asyncio.to_thread(self._body, records)
        async with (
            asyncio.timeout(self.config.timeout_seconds),
            session.post(self.url, data=data) as resp,
        ):
            if not 200 <= resp.status < 300:
                text = (await resp.content.read(300)).decode("utf-8", "replace")
                raise ConnectionError(f"HTTP {resp.status}: {text.strip()}")
            await resp.read()

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class SyslogTransport:
    """RFC 5424 over TCP or TLS (octet-counted), or datagrams to a local socket."""

    def __init__(self, config: Sink) -> None:
        if config.address is None:
            raise ValueError("a syslog sink needs an address")
        self.config = config
        scheme, _, rest = config.address.partition("://")
        self.scheme = scheme
        self.rest = rest
        self._host = formats.hostname()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._dgram: socket.socket | None = None

    def _message(self, record: Shipped) -> bytes:
        c = self.config
        return formats.syslog_message(
            record, facility=c.facility, app_name=c.app_name, host=self._host
        )

    def _framed(self, records: list[Shipped]) -> bytes:
        return b"".join(formats.octet_counted(self._message(r)) for r in records)

    async def send(self, records: list[Shipped]) -> None:
        if self.scheme == "unix":
            await self._send_local(records)
            return
        data = await asyncio.to_thread(self._framed, records)  # off the relay's loop
        async with asyncio.timeout(self.config.timeout_seconds):
            writer = await self._connect()
            writer.write(data)
            try:
                await writer.drain()
                await self._confirm(writer)
            except BaseException:
                await self._drop()
                raise

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._closed.is_set():
            return self._writer
        await self._drop()
        host, _, port = self.rest.rpartition(":")
        ctx = _tls_context(self.config) if self.scheme == "tls" else None
        reader, writer = await asyncio.open_connection(
            host.strip("[]"), int(port), ssl=ctx, server_hostname=host.strip("[]") if ctx else None
        )
        self._reader, self._writer = reader, writer
        self._closed = asyncio.Event()
        self._watch = asyncio.get_running_loop().create_task(self._watch_close(reader))
        return writer

    async def _watch_close(self, reader: asyncio.StreamReader) -> None:
        """A syslog receiver never writes: any EOF or error means it went away."""
        try:
            while await reader.read(4096):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._closed.set()

    async def _confirm(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        while True:
            if self._closed.is_set():
                raise ConnectionError("the syslog receiver closed the connection")
            if sock is None or _unacknowledged(sock.fileno()) == 0:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(CONFIRM_GRACE)
        if self._closed.is_set():
            raise ConnectionError("the syslog receiver closed the connection")

    async def _send_local(self, records: list[Shipped]) -> None:
        loop = asyncio.get_running_loop()
        if self._dgram is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect(self.rest)
            except OSError:
                sock.close()
                raise
            self._dgram = sock
        messages = await asyncio.to_thread(lambda: [self._message(r) for r in records])
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                for message in messages:
                    await loop.sock_sendall(self._dgram, message)
        except BaseException:
            self._dgram.close()
            self._dgram = None
            raise

    async def _drop(self) -> None:
        writer, self._writer = self._writer, None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def aclose(self) -> None:
        await self._drop()
        if self._dgram is not None:
            self._dgram.close()
            self._dgram = None


def _unacknowledged(fd: int) -> int:
    """Bytes sent but not yet acknowledged by the peer (Linux SIOCOUTQ)."""
    raw = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


def transport_for(config: Sink) -> Transport:
    match config.type:
        case "file":
            return FileTransport(config)
        case "http":
            return HttpTransport(config)
        case "syslog":
            return SyslogTransport(config)


__all__ = ["FileTransport", "HttpTransport", "SyslogTransport", "Transport", "transport_for"]
