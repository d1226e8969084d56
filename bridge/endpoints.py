"""The daemon's HTTP face: /metrics for Prometheus, /healthz (the process answers),
/readyz (every required network connected and joined), and, with `public_url` set,
/media/ (signed links to relayed media, see `medialinks`), on aiohttp.

The media route is reachable by anyone who has a link, so it trusts nothing in the
request but a valid signature, and what it streams back is held to a size cap, a time
limit, and headers that stop a browser from running it as a page of the bridge's site.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from imbridge import textlinks
from imbridge.adapter import HttpService, MediaGone, MediaSource, MediaUnavailable
from imbridge.config.schema import HttpConfig
from imbridge.hosts import is_loopback_host
from imbridge.httplimits import ClientLimiter, proxies
from imbridge.listener import Listener, ListenerLimits, serve
from imbridge.medialinks import PROXY_TIMEOUT, MediaLinks, MediaRequest
from imbridge.metrics import Metrics
from imbridge.textlinks import TextLinks

if TYPE_CHECKING:
    from imbridge.daemon import Daemon


def make_app(
    daemon: Daemon,
    metrics: Metrics,
    token: str | None,
    *,
    media_limiter: ClientLimiter | None = None,
    public: bool = False,
) -> web.Application:
    def bearer(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        return token is not None and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        states = daemon.network_states()
        ready = daemon.is_ready()
        body: dict[str, object] = {"ready": ready}
        # Which networks exist and which are down is reconnaissance: on a public
        # listener only the metrics token's bearer sees it.
        if not public or bearer(request):
            body["networks"] = states
            body["instance"] = daemon.leases.instance
            body["shared"] = daemon.leases.shared
            body["config_mismatch"] = daemon.leases.mismatch
        body["sinks"] = daemon.sink_states()
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        if token is not None and not bearer(request):
            return web.Response(
                status=401,
                text="bearer token required\n",
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    if daemon.media_links is not None:
        view = _media_view(daemon, daemon.media_links)
        if media_limiter is not None:
            view = media_limiter.limited(view)
        app.router.add_get("/media/{network}/{sig}/{tail:.+}", view)
    if daemon.text_links is not None:
        text = _text_view(daemon, daemon.text_links)
        if media_limiter is not None:
            text = media_limiter.limited(text)
        app.router.add_get("/text/{sig}/{name}", text)
    app.router.add_route("*", "/networks/{network}/{tail:.*}", _network_view(daemon))
    return app


def _network_view(daemon: Daemon) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Requests a network's server pushes to its adapter (`HttpService`); 404 for a
    network that takes none, 503 while it is being rebuilt (the server retries)."""

    async def network(request: web.Request) -> web.StreamResponse:
        name = request.match_info["network"]
        if name not in daemon.config.networks:
            raise web.HTTPNotFound(text="no such network\n")
        adapter: object = daemon.adapters.get(name)
        if adapter is None:
            raise web.HTTPServiceUnavailable(text="network not running\n")
        if not isinstance(adapter, HttpService):
            raise web.HTTPNotFound(text="no such network\n")
        return await adapter.handle_http(request, "/" + request.match_info["tail"])

    return network


log = structlog.get_logger("imbridge.endpoints")

# Shown in the browser; anything else is a download, so no relayed file can act as a
# page of the bridge's origin (the list Synapse itself serves inline, minus SVG).
INLINE_TYPES = frozenset({
    "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})  # fmt: skip


def content_disposition(mimetype: str, filename: str) -> str:
    """RFC 6266, with an ASCII fallback name and the exact one as `filename*`."""
    kind = "inline" if mimetype in INLINE_TYPES else "attachment"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%;' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _media_view(
    daemon: Daemon, links: MediaLinks
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def media(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        wanted = links.verify(info["network"], info["sig"], info["tail"])
        if wanted is None:
            raise web.HTTPNotFound(text="no such media\n")
        if wanted.expired:
            raise web.HTTPGone(text="this link has expired\n")
        adapter: object = daemon.adapters.get(wanted.network)
        if not isinstance(adapter, MediaSource):
            raise web.HTTPNotFound(text="no such media\n")
        try:
            return await _stream(request, adapter, wanted, links.max_bytes)
        except MediaGone:
            raise web.HTTPNotFound(text="no such media\n") from None
        except (MediaUnavailable, TimeoutError) as exc:
            log.warning("media_proxy_failed", network=wanted.network, error=str(exc) or repr(exc))
            raise web.HTTPBadGateway(text="the media could not be fetched\n") from None

    return media


def _text_view(
    daemon: Daemon, links: TextLinks
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The full text of a long message (`textlinks`), as plain text that no browser
    takes for a page."""

    async def text(request: web.Request) -> web.StreamResponse:
        wanted = links.verify(request.match_info["sig"], request.match_info["name"])
        if wanted is None:
            raise web.HTTPNotFound(text="no such text\n")
        if wanted.expired:
            raise web.HTTPGone(text="this link has expired\n")
        sealer = daemon.sealer
        body = await daemon.db.read(lambda c: textlinks.load_sync(c, wanted.key, sealer))
        if body is None:  # purged with the archive's retention
            raise web.HTTPGone(text="this text is no longer kept\n")
        return web.Response(
            text=body,
            content_type="text/plain",
            charset="utf-8",
            headers={
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=3600",
            },
        )

    return text


async def _stream(
    request: web.Request, source: MediaSource, wanted: MediaRequest, default_cap: int
) -> web.StreamResponse:
    """Streams the media; a failure before the first byte raises (the caller answers with
    a status), one after it cuts the connection, so a client never takes a truncated
    file for a whole one."""
    response = web.StreamResponse()
    try:
        async with asyncio.timeout(PROXY_TIMEOUT), source.open_media(wanted.ref) as media:
            cap = media.max_bytes or default_cap
            if media.size is not None and media.size > cap:
                raise MediaUnavailable(f"media of {media.size} bytes is over the {cap}-byte cap")
            mimetype = media.mimetype.split(";", 1)[0].strip().lower() or "application/octet-stream"
            response.headers.update({
                "Content-Type": mimetype,
                "Content-Disposition": content_disposition(mimetype, wanted.filename),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=3600",
            })  # fmt: skip
            if media.size is not None:
                response.content_length = media.size
            sent = 0
            async for chunk in media.chunks:
                sent += len(chunk)
                if sent > cap:
                    raise MediaUnavailable(f"media over the {cap}-byte cap")
                if not response.prepared:
                    await response.prepare(request)
                await response.write(chunk)
            if not response.prepared:
                await response.prepare(request)
            await response.write_eof()
            return response
    except (MediaUnavailable, TimeoutError) as exc:
        if not response.prepared:
            raise
        log.warning("media_proxy_cut", network=wanted.network, error=str(exc) or repr(exc))
        if request.transport is not None:
            request.transport.close()
        return response


def is_public(http: HttpConfig) -> bool:
    """Whether anyone but this host may reach the listener: chat users follow
    `public_url`, and any address but loopback is reachable from somewhere (a host name
    is assumed to be)."""
    if http.public_url is not None:
        return True
    return not is_loopback_host((http.listen or "").rpartition(":")[0])


def media_limiter(http: HttpConfig) -> ClientLimiter:
    limits = http.media_limits
    return ClientLimiter(
        rate=limits.rate,
        burst=limits.burst,
        concurrent=limits.concurrent,
        trusted_proxies=proxies(http.trusted_proxies),
    )


async def serve_http(app: web.Application, listen: str, http: HttpConfig) -> Listener:
    limits = ListenerLimits(
        keepalive_seconds=http.keepalive_seconds,
        max_connections=http.max_connections,
        max_connections_per_client=http.max_connections_per_client,
    )
    return await serve(app, listen, limits)
