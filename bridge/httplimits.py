"""Per-client limits for a group of HTTP routes: requests per second and requests at
once, so one client (a scraper, a script re-opening links) cannot take the bandwidth,
the upstream fetches or the workers every other user of that route group needs.

A route group makes one `ClientLimiter` and wraps its handlers with `limited`; `/media/`
does, and so can the console's routes. A client is its address, or, from a reverse
proxy named in `trusted_proxies`, the address the proxy put in `X-Forwarded-For`.
State is held for at most `max_clients` addresses (least recently seen forgotten
first), so a crowd of addresses cannot grow it without bound. The clock is passed in.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from imbridge.ratelimit import TokenBucket

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class _Client:
    bucket: TokenBucket
    active: int = 0


@dataclass(slots=True)
class ClientLimiter:
    """`rate` requests per second per client after a `burst`, `concurrent` at once."""

    rate: float
    burst: int
    concurrent: int
    trusted_proxies: tuple[Network, ...] = ()
    max_clients: int = 10_000
    clock: Callable[[], float] = time.monotonic
    refused: int = 0
    _clients: OrderedDict[str, _Client] = field(default_factory=OrderedDict)

    def client_of(self, request: web.Request) -> str:
        """The requesting address: the peer, or the first untrusted hop it forwarded for."""
        peer = request.remote or "?"
        hops = [h.strip() for h in request.headers.getall("X-Forwarded-For", ())]
        chain = [peer, *reversed([a.strip() for h in hops for a in h.split(",")])]
        for address in chain:
            if not self._trusted(address):
                return address
        return chain[-1]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    def _entry(self, client: str) -> _Client:
        entry = self._clients.get(client)
        if entry is None:
            if len(self._clients) >= self.max_clients:
                self._forget_one()
            entry = _Client(TokenBucket.full(self.rate, self.burst, self.clock()))
            self._clients[client] = entry
        self._clients.move_to_end(client)
        return entry

    def _forget_one(self) -> None:
        for client, entry in self._clients.items():
            if entry.active == 0:
                del self._clients[client]
                return

    def limited(self, handler: Handler) -> Handler:
        """`handler`, answering 429 with Retry-After to a client over its limits."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            entry = self._entry(self.client_of(request))
            if entry.active >= self.concurrent:
                self.refused += 1
                raise _too_many("too many requests at once from this address\n", 1.0)
            wait = entry.bucket.take(self.clock())
            if wait > 0:
                self.refused += 1
                raise _too_many("too many requests from this address\n", wait)
            entry.active += 1
            try:
                return await handler(request)
            finally:
                entry.active -= 1

        return guarded


def proxies(addresses: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(a, strict=False) for a in addresses)


def _too_many(text: str, wait: float) -> web.HTTPTooManyRequests:
    return web.HTTPTooManyRequests(text=text, headers={"Retry-After": str(math.ceil(wait))})
