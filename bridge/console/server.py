"""Where the console runs: mounted in the daemon's HTTP listener, or served on its own
by `imbridge console`, and the check that keeps it off the network without TLS.

Off loopback, passwords and session cookies would cross the network in clear; so the
console refuses to start there unless `console.public_url` is https (TLS terminated by a
reverse proxy in front of it) or the operator wrote `allow_insecure_http: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import LOOPBACK_HOSTS, Config
from imbridge.console.app import Console, build_app, open_database
from imbridge.errors import ImbridgeError

log = structlog.get_logger("imbridge.console")
MOUNT = "/console/"


class ConsoleRefused(ImbridgeError):
    """The console would be exposed without TLS."""


def exposure_problem(config: Config, listen: str) -> str | None:
    """Why the console may not listen on `listen`, or None."""
    host = listen.rpartition(":")[0].strip("[]")
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    cfg = config.console
    if cfg.allow_insecure_http:
        return None
    if cfg.public_url is not None and urlsplit(cfg.public_url).scheme == "https":
        return None
    return (
        f"the console would listen on {listen}, beyond loopback, without TLS: set "
        "console.public_url to its https:// address (behind a reverse proxy), or "
        "console.allow_insecure_http: true for a closed lab"
    )


@contextlib.asynccontextmanager
async def mounted(app: web.Application, config: Config, listen: str) -> AsyncIterator[None]:
    """Mounts the console at `/console/` on the daemon's application (before it starts
    serving) with a database connection of its own, closed on exit."""
    problem = exposure_problem(config, listen)
    if problem is not None:
        raise ConsoleRefused(problem)
    db = open_database(config)
    await db.open()
    try:
        store = ArchiveStore(config.archive, state_dir=config.bridge.state_dir)
        app.add_subapp(MOUNT, build_app(Console(config, db, store)))
        yield
    finally:
        await db.aclose()


async def serve(config: Config, *, stop: asyncio.Event | None = None) -> int:
    """`imbridge console`: the console alone on `console.listen`, until SIGTERM/SIGINT."""
    listen = config.console.listen
    root = web.Application()

    async def to_console(_: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(MOUNT)

    root.router.add_get("/", to_console)
    stopping = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with mounted(root, config, listen):
        runner = web.AppRunner(root, access_log=None)
        await runner.setup()
        host, _, port = listen.rpartition(":")
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        log.info("console_listening", listen=listen, url=f"http://{listen}{MOUNT}")
        if stop is None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
        finally:
            await runner.cleanup()
    return 0
