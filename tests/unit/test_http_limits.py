"""Per-client limits on `/media/`: one address over its rate or its concurrent downloads is
told to come back later (429 with Retry-After) while another address is served, and
behind a trusted reverse proxy the address is the one the proxy forwarded for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest

from imbridge.adapter import Cursors, Media, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter
from imbridge.config import parse_config
from imbridge.daemon import Daemon
from imbridge.errors import ConfigError
from tests.servers.process import free_port


class SlowMedia(MemoryAdapter):
    """Serves one file whose second chunk waits for `release`, so a download stays open."""

    release: ClassVar[asyncio.Event | None] = None

    @asynccontextmanager
    async def open_media(self, ref: str) -> AsyncIterator[Media]:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            if ref == "hs/slow" and self.release is not None:
                await self.release.wait()
            yield b"rest"

        yield Media(mimetype="text/plain", size=None, chunks=chunks())


def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
    return SlowMedia(name, net, cursors)


def config(tmp_path: Path, port: int, limits: str) -> str:
    return f"""
bridge:
  state_dir: {tmp_path}
  http:
    listen: "127.0.0.1:{port}"
    public_url: "http://127.0.0.1:{port}/"
    trusted_proxies: [127.0.0.0/8]
    media_limits: {limits}
networks:
  mx: {{type: memory}}
"""


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"203.0.113.9, {address}"}


async def test_a_client_over_its_rate_waits_while_others_are_served(tmp_path: Path) -> None:
    port = free_port()
    cfg = parse_config(config(tmp_path, port, "{rate: 0.01, burst: 2}"))
    async with Daemon(cfg, factory=build) as daemon, aiohttp.ClientSession() as http:
        assert daemon.media_links is not None
        url = daemon.media_links.link("mx", "hs/fast", "a.txt")
        alice, bob = forwarded("198.51.100.1"), forwarded("198.51.100.2")
        for _ in range(2):
            async with http.get(url, headers=alice) as resp:
                assert resp.status == 200
        async with http.get(url, headers=alice) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
        async with http.get(url, headers=bob) as resp:
            assert resp.status == 200
            assert await resp.read() == b"firstrest"


async def test_a_client_gets_only_its_share_of_downloads_at_once(tmp_path: Path) -> None:
    port = free_port()
    cfg = parse_config(config(tmp_path, port, "{concurrent: 1}"))
    SlowMedia.release = asyncio.Event()
    async with Daemon(cfg, factory=build) as daemon, aiohttp.ClientSession() as http:
        assert daemon.media_links is not None
        slow = daemon.media_links.link("mx", "hs/slow", "slow.txt")
        fast = daemon.media_links.link("mx", "hs/fast", "fast.txt")
        alice = forwarded("198.51.100.1")
        async with http.get(slow, headers=alice) as first:
            assert first.status == 200
            assert await first.content.readexactly(5) == b"first"
            async with http.get(fast, headers=alice) as resp:
                assert resp.status == 429
            async with http.get(fast, headers=forwarded("198.51.100.2")) as resp:
                assert resp.status == 200
            SlowMedia.release.set()
            assert await first.read() == b"rest"
        async with http.get(fast, headers=alice) as resp:
            assert resp.status == 200


async def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    port = free_port()
    body = config(tmp_path, port, "{rate: 0.01, burst: 1}").replace("127.0.0.0/8", "192.0.2.1")
    async with (
        Daemon(parse_config(body), factory=build) as daemon,
        aiohttp.ClientSession() as http,
    ):
        assert daemon.media_links is not None
        url = daemon.media_links.link("mx", "hs/fast", "a.txt")
        async with http.get(url, headers=forwarded("198.51.100.1")) as resp:
            assert resp.status == 200
        # Loopback is not a trusted proxy here: a made-up header does not make a new client.
        async with http.get(url, headers=forwarded("198.51.100.2")) as resp:
            assert resp.status == 429


def test_a_trusted_proxy_that_is_no_address_names_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("bridge:\n  http:\n    listen: 127.0.0.1:1\n    trusted_proxies: [nginx]\n")
    assert "bridge.http.trusted_proxies" in str(err.value)
    assert "'nginx' is not an IP address or network" in str(err.value)
