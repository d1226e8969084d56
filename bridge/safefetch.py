"""HTTP downloads of attachment URLs that someone else posted, safe at the network's edge.

An attachment URL comes from whoever posted it, and the bridge fetches it from inside the
organisation's network: the archive to keep the file, the Matrix (`media: upload`) and
XMPP (HTTP File Upload) adapters to re-post it. Without care, a posted link to
`http://169.254.169.254/` or to an internal admin page would make the bridge fetch it and
keep or publish the answer (SSRF). So every such fetch goes through here:

* only `http` and `https`;
* every address the host name resolves to must be public (no loopback, private, shared,
  link-local, multicast, unique-local, reserved or unspecified address, IPv4-mapped ones
  included); the check runs in the connector's resolver, on the addresses actually
  connected to, so a DNS answer that changes between check and use gains nothing;
* redirects are followed by hand, at most `MAX_REDIRECTS`, each hop checked the same way;
* origins listed in `archive.attachments.allow_origins` or a network's
  `media_allow_origins` (`scheme://host[:port]`) skip the address check: a file host inside
  the organisation, or a test server on loopback;
* at most `max_bytes` are read, whatever the server announces (`fetch_capped`).

The core owns this so that adapters, which may import the core, share one guard.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from imbridge.adapter import Media, MediaGone, MediaUnavailable

MAX_REDIRECTS = 3
CHUNK = 65536
DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedURL(MediaGone):
    """Never fetched: a scheme or an address the bridge does not reach (not retried)."""


class TooLarge(MediaGone):
    """The file passes the cap: refused as soon as that is known, never truncated."""


@dataclass(frozen=True, slots=True)
class Download:
    """A whole file, read within its cap."""

    data: bytes
    mimetype: str


def is_public(address: str) -> bool:
    """Whether an IP address is one the open internet routes to."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def origin_of(url: str) -> str | None:
    """`scheme://host:port` of an http(s) URL, port always written; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def check_origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """A config validator's half: ValueError naming the first malformed origin."""
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in DEFAULT_PORTS or not sep or not rest or "/" in rest.rstrip("/"):
            raise ValueError(f"{origin!r}: expected scheme://host[:port], e.g. https://files.corp")
    return origins


def normalise_origins(origins: tuple[str, ...]) -> frozenset[str]:
    out = set()
    for o in origins:
        n = origin_of(o.rstrip("/") + "/")
        if n is not None:
            out.add(n)
    return frozenset(out)


class PublicOnlyResolver(AbstractResolver):
    """Resolves as usual, then refuses the host unless every address is public."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            if not is_public(entry["host"]):
                raise RefusedURL(f"{host} resolves to a non-public address ({entry['host']})")
        return found

    async def close(self) -> None:
        await self._inner.close()


def _check(url: str, allowed: frozenset[str]) -> bool:
    """Raises for what may never be fetched; True when the origin is allow-listed."""
    origin = origin_of(url)
    if origin is None:
        raise RefusedURL(f"not an http(s) URL: {url[:60]!r}")
    if origin in allowed:
        return True
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the resolver checks what it resolves to
    if not is_public(host):
        # aiohttp connects to a literal address without asking the resolver.
        raise RefusedURL(f"{host} is not a public address")
    return False


@asynccontextmanager
async def open_url(
    url: str, *, allow_origins: frozenset[str], timeout: float
) -> AsyncIterator[Media]:
    """GET `url` as `Media`; RefusedURL or MediaGone (a 4xx) are final, MediaUnavailable
    (network trouble, 5xx, 429) worth retrying."""
    for _ in range(MAX_REDIRECTS + 1):
        trusted = _check(url, allow_origins)
        connector: aiohttp.TCPConnector = (
            aiohttp.TCPConnector()
            if trusted
            else aiohttp.TCPConnector(resolver=PublicOnlyResolver())
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                async with asyncio.timeout(timeout):
                    resp = await session.get(url, allow_redirects=False)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise MediaUnavailable(f"{type(exc).__name__}: {exc}") from exc
            try:
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.headers.get("Location")
                    if not location:
                        raise MediaGone(f"HTTP {resp.status} without a Location")
                    url = urljoin(url, location)
                    continue
                if resp.status >= 500 or resp.status == 429:
                    raise MediaUnavailable(f"HTTP {resp.status}")
                if resp.status != 200:
                    raise MediaGone(f"HTTP {resp.status}")
                yield Media(
                    mimetype=resp.content_type or "application/octet-stream",
                    size=resp.content_length,
                    chunks=_chunks(resp),
                )
                return
            finally:
                resp.release()
    raise MediaGone(f"more than {MAX_REDIRECTS} redirects")


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, OSError) as exc:
        raise MediaUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def fetch_capped(
    url: str, *, max_bytes: int, allow_origins: frozenset[str], timeout: float
) -> Download:
    """The whole file at `url`, at most `max_bytes`, under the same guard as `open_url`.
    TooLarge and RefusedURL are final like MediaGone; MediaUnavailable is worth retrying."""
    try:
        async with (
            asyncio.timeout(timeout),
            open_url(url, allow_origins=allow_origins, timeout=timeout) as media,
        ):
            if media.size is not None and media.size > max_bytes:
                raise TooLarge(f"over {max_bytes} bytes")
            chunks: list[bytes] = []
            total = 0
            async for chunk in media.chunks:
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(f"over {max_bytes} bytes")
                chunks.append(chunk)
            return Download(b"".join(chunks), media.mimetype)
    except TimeoutError as exc:
        raise MediaUnavailable(f"no whole answer within {timeout:g} s") from exc
