"""Reading Matrix media for the bridge's links: the authenticated endpoint with the
relay's token, v3 on older homeservers, no redirects; and whether a homeserver's
`/versions` answer means plain media links will not open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from imbridge.adapter import MediaGone, MediaUnavailable
from imbridge.adapters.matrix.proxy import advertises_auth_media, download


@pytest.mark.parametrize(
    ("versions", "authenticated"),
    [
        ({"versions": ["v1.10", "v1.11"]}, True),
        ({"versions": ["r0.6.1", "v1.1", "v1.12"]}, True),
        ({"versions": ["v1.1", "v1.9", "v1.10"]}, False),
        ({"versions": ["v1.10"], "unstable_features": {"org.matrix.msc3916.stable": True}}, True),
        ({"versions": ["v1.10"], "unstable_features": {"org.matrix.msc3916.stable": False}}, False),
        ({"versions": "v1.11"}, False),
        ({}, False),
    ],
)
def test_authenticated_media_is_recognised(versions: dict[str, Any], authenticated: bool) -> None:
    assert advertises_auth_media(versions) is authenticated


@asynccontextmanager
async def homeserver(v1: bool) -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """A stand-in homeserver: with `v1`, authenticated media (redirecting one file
    elsewhere); without, only the v3 endpoint, as before Matrix 1.11."""
    seen: list[tuple[str, str]] = []

    async def v1_download(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Authorization", "")))
        if not v1:
            return web.json_response({"errcode": "M_UNRECOGNIZED"}, status=404)
        if request.match_info["id"] == "moved":
            raise web.HTTPTemporaryRedirect("http://elsewhere.invalid/x")
        if request.match_info["id"] == "gone":
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.Response(body=b"v1 bytes", content_type="image/png")

    async def v3_download(request: web.Request) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Authorization", "")))
        return web.Response(body=b"v3 bytes", content_type="image/gif")

    app = web.Application()
    app.router.add_get("/_matrix/client/v1/media/download/{server}/{id}", v1_download)
    app.router.add_get("/_matrix/media/v3/download/{server}/{id}", v3_download)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def read(url: str, ref: str) -> tuple[str, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        download(session, url, ref, "tok", timeout=5) as (mimetype, _, chunks),
    ):
        return mimetype, b"".join([c async for c in chunks])


async def test_media_are_read_with_the_token_from_the_authenticated_endpoint() -> None:
    async with homeserver(v1=True) as (url, seen):
        assert await read(url, "hs/abc") == ("image/png", b"v1 bytes")
        assert seen == [("/_matrix/client/v1/media/download/hs/abc", "Bearer tok")]
        with pytest.raises(MediaGone):
            await read(url, "hs/gone")
        # A redirect would carry the token to another host: not followed.
        with pytest.raises(MediaUnavailable):
            await read(url, "hs/moved")


async def test_a_homeserver_before_matrix_1_11_is_read_at_v3() -> None:
    async with homeserver(v1=False) as (url, seen):
        assert await read(url, "hs/abc") == ("image/gif", b"v3 bytes")
        assert [path for path, _ in seen] == [
            "/_matrix/client/v1/media/download/hs/abc",
            "/_matrix/media/v3/download/hs/abc",
        ]
