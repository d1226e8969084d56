"""The archive's plain-HTTP attachment download against a real web server on loopback:
it fetches what an allow-listed origin serves, and nothing on an internal address,
whether named directly, reached through a host name, or through a redirect."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from imbridge.adapter import MediaGone
from imbridge.archive.capture import AttachmentCapture
from imbridge.archive.files import FileStore
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.schema import Archive
from imbridge.db import Database
from imbridge.events import Attachment, EventId, Message, Origin, Sender
from imbridge.safefetch import RefusedURL, normalise_origins, open_url

pytestmark = pytest.mark.integration

BODY = b"%PDF-1.7 board minutes " * 500


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """`/file` serves BODY; `/to?url=U` redirects to U; `/loop` redirects to itself."""

    async def file(_: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/pdf")

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    app = web.Application()
    app.router.add_get("/file", file)
    app.router.add_get("/to", to)
    app.router.add_get("/loop", loop)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def fetch(url: str, allowed: str | None) -> bytes:
    origins = normalise_origins((allowed,) if allowed else ())
    async with open_url(url, allow_origins=origins, timeout=10) as media:
        return b"".join([c async for c in media.chunks])


async def test_an_allow_listed_origin_is_fetched(server: str) -> None:
    assert await fetch(f"{server}/file", server) == BODY


async def test_loopback_is_refused_unless_allow_listed(server: str) -> None:
    with pytest.raises(RefusedURL, match="not a public address"):
        await fetch(f"{server}/file", None)


async def test_a_host_name_resolving_to_loopback_is_refused(server: str) -> None:
    assert "127.0.0.1" in {a[4][0] for a in socket.getaddrinfo("localhost", 80)}
    port = server.rsplit(":", 1)[1]
    with pytest.raises(RefusedURL, match="non-public address"):
        await fetch(f"http://localhost:{port}/file", server)


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://localhost:{port}/file",
        "file:///etc/passwd",
    ],
)
async def test_a_redirect_to_an_internal_address_is_refused(server: str, target: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(RefusedURL):
        await fetch(f"{server}/to?url={target.format(port=port)}", server)


async def test_redirects_are_not_followed_forever(server: str) -> None:
    with pytest.raises(MediaGone, match="redirects"):
        await fetch(f"{server}/loop", server)


async def test_the_capture_worker_keeps_a_plain_http_attachment(
    server: str, tmp_path: Path
) -> None:
    settings = Archive.model_validate({"attachments": {"allow_origins": [server]}})
    store = ArchiveStore(settings, state_dir=tmp_path)
    files = FileStore.for_archive(settings, tmp_path)
    event = Message(
        id=EventId("ev1"),
        origin=Origin(network="xmpp", room="ops@conf", sender=Sender(id="bob", name="bob")),
        text="minutes",
        attachments=(
            Attachment(url=f"{server}/file", name="minutes.pdf"),
            Attachment(url=f"{server}/missing", name="gone.pdf"),
        ),
    )
    async with Database(tmp_path / "imbridge.db", {"archive": ARCHIVE_MIGRATIONS}) as db:
        await db.transact(lambda conn: store.record_event(conn, event, []))
        capture = AttachmentCapture(db, store, files, {})
        assert await capture.run_once() == 2
        rows = await db.read(
            lambda conn: [
                (store.body(r.record)["index"], r.record.action, store.body(r.record)["sha256"])
                for r in store.rows(conn, "WHERE kind = 'file' ORDER BY seq")
            ]
        )
    assert sorted(rows) == [(0, "stored", hashlib.sha256(BODY).hexdigest()), (1, "failed", None)]
    (file_id,) = files.ids()
    assert files.read_checked(file_id, hashlib.sha256(BODY).hexdigest()) == BODY
