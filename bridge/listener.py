"""The HTTP listener's socket side: how many connections it holds, for how long, and
what it says when the process runs out of file descriptors.

aiohttp alone keeps an idle connection for an hour and accepts as many as the kernel
hands over, so a few dozen idle sockets exhaust a service started with a low
`LimitNOFILE=`; asyncio then logs each failed accept, up to a hundred times per loop
pass. Here every connection is admitted by a gate that keeps the total, and each
client's share, under a cap (asking the oldest connection to close, so an idle crowd
cannot lock out a health check), a short keep-alive timeout closes idle ones, and
accept failures are logged once per interval with a count.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("imbridge.listener")

FDS_RESERVED_FOR_THE_REST = 0.5
"""Share of the descriptor limit left to the database, network sessions and files."""
ACCEPT_LOG_INTERVAL = 10.0
RETIRE_GRACE = 2.0
"""Seconds a connection retired to make room still has to finish a response."""
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 18\r\n\r\ntoo many clients.\n"
)


def connection_cap(configured: int) -> int:
    """`configured`, lowered to what the process's descriptor limit can hold."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(4, min(configured, int(soft * (1 - FDS_RESERVED_FOR_THE_REST))))


def peer_of(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


class ConnectionGate:
    """The protocol factory the socket serves through: admits a connection to aiohttp's
    handler, or answers 503 and closes it when even after retiring old ones the cap is
    reached (every connection being busy)."""

    def __init__(self, server: web.Server, *, cap: int, per_client: int) -> None:
        self.server = server
        self.cap = cap
        self.per_client = min(per_client, cap)
        self.refused = 0
        self._retired: set[RequestHandler] = set()

    def __call__(self) -> asyncio.Protocol:
        return _Gatekeeper(self)

    def admit(self, transport: asyncio.Transport) -> bool:
        peer = peer_of(transport)
        open_now = self.server.connections
        self._retired.intersection_update(open_now)  # forget the ones that have closed
        live = [h for h in open_now if h not in self._retired]
        mine = [h for h in live if peer_of(h.transport) == peer]
        if len(mine) >= self.per_client:
            self._retire(mine[0])
            live.remove(mine[0])
        if len(live) >= self.cap:
            self._retire(live[0])
        # Retired connections finish their request before closing: they still count.
        if len(open_now) >= self.cap + max(2, self.cap // 4):
            self.refused += 1
            return False
        return True

    def _retire(self, handler: RequestHandler) -> None:
        """Closes `handler` once its current request is answered, or after a grace
        period: an idle one (the usual case) is only closed by the latter."""
        self._retired.add(handler)
        handler.close()
        asyncio.get_running_loop().call_later(RETIRE_GRACE, handler.force_close)

    def clients(self) -> Counter[str]:
        return Counter(peer_of(h.transport) for h in self.server.connections)


class _Gatekeeper(asyncio.Protocol):
    """Lives only for `connection_made`: hands the transport on, or refuses it."""

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a TCP server's are
        if not self._gate.admit(transport):
            transport.write(_REFUSAL)
            transport.close()
            return
        handler = self._gate.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)


class _GatedSite(web.TCPSite):
    def __init__(self, runner: web.AppRunner, host: str, port: int, gate: ConnectionGate):
        super().__init__(runner, host, port)
        self._gate = gate

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        self._server = await asyncio.get_running_loop().create_server(
            self._gate, self._host, self._port, backlog=self._backlog
        )


class AcceptErrorThrottle:
    """An event-loop exception handler that logs running out of descriptors once per
    `interval` with how many failures it stands for, and passes on anything else."""

    def __init__(
        self,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
        *,
        interval: float = ACCEPT_LOG_INTERVAL,
    ) -> None:
        self._previous = previous
        self._interval = interval
        self._last = float("-inf")
        self.suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not str(context.get("message", "")).startswith("socket.accept() out of"):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - self._last < self._interval:
            self.suppressed += 1
            return
        log.error(
            "accept_failed",
            error=str(exc) if exc else context.get("message"),
            since_last=self.suppressed,
            hint="the process is out of file descriptors: raise LimitNOFILE= or lower "
            "bridge.http.max_connections",
        )
        self._last = now
        self.suppressed = 0

    def restore(self, loop: asyncio.AbstractEventLoop) -> None:
        """Gives `loop` back the handler it had, unless another one replaced this since."""
        if loop.get_exception_handler() is self:
            loop.set_exception_handler(self._previous)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerLimits:
    keepalive_seconds: float = 15.0
    max_connections: int = 256
    max_connections_per_client: int = 32


class Listener:
    """A started HTTP listener; `cleanup` stops it and gives the loop its handler back."""

    def __init__(self, runner: web.AppRunner, gate: ConnectionGate, throttle: AcceptErrorThrottle):
        self.runner = runner
        self.gate = gate
        self.throttle = throttle

    async def cleanup(self) -> None:
        self.throttle.restore(asyncio.get_running_loop())
        await self.runner.cleanup()


async def serve(app: web.Application, listen: str, limits: ListenerLimits) -> Listener:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.keepalive_seconds)
    await runner.setup()
    if runner.server is None:
        raise RuntimeError("aiohttp made no server")
    cap = connection_cap(limits.max_connections)
    gate = ConnectionGate(runner.server, cap=cap, per_client=limits.max_connections_per_client)
    loop = asyncio.get_running_loop()
    throttle = AcceptErrorThrottle(loop.get_exception_handler())
    loop.set_exception_handler(throttle)
    try:
        await _GatedSite(runner, host.strip("[]"), int(port), gate).start()
    except BaseException:
        throttle.restore(loop)
        await runner.cleanup()
        raise
    if cap < limits.max_connections:
        log.warning("http_connections_capped", cap=cap, configured=limits.max_connections)
    return Listener(runner, gate, throttle)
