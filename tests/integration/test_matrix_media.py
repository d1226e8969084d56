"""Media posted on Matrix, relayed elsewhere, against a real Synapse with its default
authenticated media (Matrix 1.11): a plain download link opens for no one, so the bridge
relays a signed link to its own listener and serves the bytes with its own token; a link
it did not make serves nothing."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import structlog

from imbridge.adapters.matrix import MatrixAdapter, MatrixConfig
from imbridge.adapters.matrix.proto.translate import media_url
from imbridge.adapters.memory import MemoryAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.events import Message
from tests.servers.process import free_port
from tests.servers.synapse import DictCursors, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_matrix_image_is_relayed_as_a_signed_link_that_opens(
    synapse: SynapseServer, tmp_path: Path
) -> None:
    relay = synapse.register()
    port = free_port()
    public = f"http://127.0.0.1:{port}/"
    async with Watcher(synapse, synapse.register()) as alice:
        room = await alice.create_room(invite=[relay.user_id])
        config = parse_config(json.dumps({
            "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"},
                       "http": {"listen": f"127.0.0.1:{port}", "public_url": public}},
            "networks": {
                "mx": {"type": "matrix", "homeserver": synapse.url, "user_id": relay.user_id,
                       "access_token": relay.access_token, "sync_timeout_ms": 1000},
                "mem": {"type": "memory"},
            },
            "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                         {"network": "mem", "room": "#elsewhere"}]}},
            "archive": {"enabled": False},
        }))  # fmt: skip
        async with Daemon(config) as daemon, aiohttp.ClientSession() as http:
            assert await daemon.ready(30)
            mem = daemon.adapters["mem"]
            assert isinstance(mem, MemoryAdapter)
            mxc = await alice.upload(PNG, "map.png")
            unposted = await alice.upload(b"private", "secret.png")
            image = {"msgtype": "m.image", "body": "map.png", "url": mxc,
                     "info": {"mimetype": "image/png", "size": len(PNG)}}  # fmt: skip
            await alice.send(room, image)

            def relayed() -> list[Message]:
                return [i.event for i in mem.sent
                        if isinstance(i.event, Message) and i.event.attachments]  # fmt: skip

            await wait_for(relayed, timeout=20, what="the image on the other network")
            att = relayed()[0].attachments[0]
            assert att.name == "map.png"
            assert att.url.startswith(f"{public}media/mx/")
            assert att.url.endswith("/map.png")
            assert relay.access_token not in att.url

            # What a reader on the other network gets by opening the link.
            assert await get(http, att.url) == (200, PNG, "image/png")

            # The plain link, what was relayed before, opens for no one on this server.
            plain = media_url(synapse.url, mxc)
            assert plain is not None
            assert (await get(http, plain))[0] == 404

            # Links the bridge did not make serve nothing.
            path = urlsplit(att.url).path
            _, _, network, sig, server, media_id, _name = path.split("/")
            other_id = unposted.rsplit("/", 1)[1]
            forged = [
                att.url.replace(f"/{sig}/", f"/{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}/"),
                att.url.replace(f"/{media_id}/", f"/{other_id}/"),  # unposted media
                att.url.replace("/media/mx/", "/media/mem/"),
                f"{public}media/{network}/{sig}/{server}/{media_id}/..%2F..%2Fstate",
            ]
            for url in forged:
                status, body, _ = await get(http, url)
                assert status == 404, url
                assert body not in (PNG, b"private")

            # A signed link to media the homeserver no longer has: 404, not a crash.
            assert daemon.media_links is not None
            gone = daemon.media_links.link("mx", f"{server}/NoSuchMedia", "x.png")
            assert (await get(http, gone))[0] == 404


async def test_matrix_without_public_url_warns_once_that_links_will_not_open(
    synapse: SynapseServer,
) -> None:
    relay = synapse.register()
    config = MatrixConfig.model_validate({
        "type": "matrix", "homeserver": synapse.url, "user_id": relay.user_id,
        "access_token": relay.access_token, "sync_timeout_ms": 1000,
    })  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        adapter = MatrixAdapter("mx", config, DictCursors())

        async def sink(_: object) -> None:
            return None

        try:
            for _ in range(2):  # a reconnect does not repeat it
                await adapter.start(sink)
                await adapter.aclose()
        finally:
            await adapter.aclose()
    warnings = [e for e in logs if e["event"] == "media_links_will_not_open"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "bridge.http.public_url" in warnings[0]["fix"]
