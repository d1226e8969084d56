"""A web server on loopback that stands for another network's media host: the place an
attachment relayed into XMPP points at, which the adapter downloads to re-upload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web


@dataclass
class FileHost:
    files: dict[str, tuple[bytes, str]]  # name -> (content, MIME type)
    port: int = 0
    requested: list[str] = field(default_factory=list)
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    """Names whose download waits until the test sets the event."""
    redirects: dict[str, str] = field(default_factory=dict)
    """Names answered with a 302 to another URL."""

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requested.append(name)
        if name in self.held:
            await self.held[name].wait()
        if name in self.redirects:
            raise web.HTTPFound(self.redirects[name])
        if name not in self.files:
            raise web.HTTPNotFound
        body, mimetype = self.files[name]
        return web.Response(body=body, content_type=mimetype)


@asynccontextmanager
async def serving(files: dict[str, tuple[bytes, str]]) -> AsyncIterator[FileHost]:
    host = FileHost(files)
    app = web.Application()
    app.router.add_get("/{name}", host.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host.port = runner.addresses[0][1]
    try:
        yield host
    finally:
        for event in host.held.values():
            event.set()
        await runner.cleanup()


async def fetch(url: str) -> tuple[int, bytes]:
    """What a user's client gets when it opens `url`."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read()
