"""Signed media links: the bridge's `/media/` route serves exactly what the bridge linked,
to anyone holding the link, and nothing else; and `bridge.http.public_url` is refused
with its YAML path when it cannot be a base URL of the listener."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp
import pytest
import structlog

from imbridge.adapter import Cursors, Media, MediaGone, MediaUnavailable, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter
from imbridge.config import parse_config
from imbridge.config.schema import HttpConfig
from imbridge.daemon import Daemon
from imbridge.endpoints import is_public
from imbridge.errors import ConfigError
from imbridge.medialinks import KEY_FILE, MediaLinks, load_key
from tests.servers.process import free_port

BASE = "https://bridge.example.org/"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def links(key: bytes = b"k" * 32) -> MediaLinks:
    return MediaLinks(key, BASE)


def tail_of(url: str) -> tuple[str, str, str]:
    """(network, sig, rest) of a link, as the route's path pattern splits it."""
    path = urlsplit(url).path
    assert path.startswith("/media/")
    network, sig, rest = path[len("/media/") :].split("/", 2)
    return network, sig, rest


def test_a_link_verifies_to_what_was_signed() -> None:
    url = links().link("mx", "example.org/AbC-123_x", "cat.png")
    assert url.startswith(f"{BASE}media/mx/")
    assert url.endswith("/example.org/AbC-123_x/cat.png")
    got = links().verify(*tail_of(url))
    assert got is not None
    assert (got.network, got.ref, got.filename) == ("mx", "example.org/AbC-123_x", "cat.png")


def test_tampered_or_replayed_links_are_refused() -> None:
    url = links().link("mx", "example.org/abc", "cat.png")
    network, sig, rest = tail_of(url)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert links().verify(network, flipped, rest) is None
    assert links().verify("other-mx", sig, rest) is None  # same media, another network
    assert links().verify(network, sig, "example.org/abd/cat.png") is None  # other media
    assert links().verify(network, sig, "evil.example/abc/cat.png") is None  # other server
    assert links(b"x" * 32).verify(network, sig, rest) is None  # another bridge's key
    assert links().verify(network, "", rest) is None
    # The name is signed too: nobody renames invoice.pdf to invoice.pdf.exe.
    assert links().verify(network, sig, "example.org/abc/cat.png.exe") is None
    assert links().verify(network, sig, "example.org/abc/dog.png") is None
    # Nor moves the expiry: it is signed with the rest.
    expires, _, mac = sig.partition(".")
    assert links().verify(network, f"{int(expires) + 86400}.{mac}", rest) is None


def test_a_link_expires_after_its_lifetime() -> None:
    now = [1_700_000_000.0]
    signer = MediaLinks(b"k" * 32, BASE, lifetime_days=2, clock=lambda: now[0])
    parts = tail_of(signer.link("mx", "example.org/abc", "cat.png"))
    now[0] += 2 * 86400 - 1
    fresh = signer.verify(*parts)
    assert fresh is not None
    assert not fresh.expired
    now[0] += 1
    stale = signer.verify(*parts)
    assert stale is not None
    assert stale.expired


@pytest.mark.parametrize(
    "name", ["..", ".", "a/b", "a\\b", "x\x00y", "line\r\nSet-Cookie: a=b", 'q"uote', ""]
)
def test_path_tricks_in_the_file_name_are_refused(name: str) -> None:
    network, sig, _ = tail_of(links().link("mx", "example.org/abc", "cat.png"))
    assert links().verify(network, sig, f"example.org/abc/{name}") is None


@pytest.mark.parametrize("ref", ["../abc", "example.org/..", "a//b", "a/./b", "a b/c", ""])
def test_refs_that_could_mean_a_path_step_are_never_linked(ref: str) -> None:
    with pytest.raises(ValueError, match="not a linkable"):
        links().link("mx", ref, "f")
    assert links().verify("mx", "sig", f"{ref}/f") is None


def test_a_name_unfit_for_a_link_becomes_file() -> None:
    assert links().link("mx", "s/m", "../../etc/passwd").endswith("/s/m/file")
    assert links().link("mx", "s/m", "two words é.png").endswith("/s/m/two%20words%20%C3%A9.png")


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_key(tmp_path)
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600
    assert load_key(tmp_path) == first
    url = MediaLinks.from_state(tmp_path, BASE).link("mx", "s/m", "f")
    assert MediaLinks.from_state(tmp_path, BASE).verify(*tail_of(url)) is not None


HTTP_BAD = [
    ("{listen: '127.0.0.1:1', public_url: 'ftp://bridge.example.org/'}", "http:// or https://"),
    ("{listen: '127.0.0.1:1', public_url: 'bridge.example.org'}", "http:// or https://"),
    ("{listen: '127.0.0.1:1', public_url: 'https://b.example/?x=1'}", "no query"),
    ("{listen: '127.0.0.1:1', public_url: 'https://u:p@b.example/'}", "no query"),
    ("{public_url: 'https://bridge.example.org/'}", "needs bridge.http.listen"),
]


@pytest.mark.parametrize(("http", "message"), HTTP_BAD)
def test_bad_public_url_names_its_path(http: str, message: str) -> None:
    text = f"bridge:\n  http: {http}\nnetworks:\n  a: {{type: memory}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "bridge.http.public_url (line 2)" in str(caught.value)
    assert message in str(caught.value)


def test_public_url_gets_its_trailing_slash() -> None:
    config = parse_config(
        "bridge:\n  http: {listen: '127.0.0.1:1', public_url: 'https://b.example/chat'}\n"
        "networks:\n  a: {type: memory}\n"
    )
    assert config.bridge.http.public_url == "https://b.example/chat/"


# -- the route, served by a daemon whose memory network keeps media -------------------


class MediaMemory(MemoryAdapter):
    """A memory network that also keeps media, the way Matrix does behind its token."""

    files: ClassVar[dict[str, tuple[bytes, str]]] = {}
    broken: ClassVar[bool] = False

    @asynccontextmanager
    async def open_media(self, ref: str) -> AsyncIterator[Media]:
        if self.broken:
            raise MediaUnavailable("server down")
        if ref not in self.files:
            raise MediaGone(ref)
        data, mimetype = self.files[ref]

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 100):
                yield data[i : i + 100]

        yield Media(mimetype=mimetype, size=None, chunks=chunks(), max_bytes=4096)


async def test_the_route_serves_exactly_what_was_linked(tmp_path: Path) -> None:
    port = free_port()
    config = parse_config(f"""
bridge:
  state_dir: {tmp_path}
  http: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}/"}}
networks:
  mx: {{type: memory}}
  plain: {{type: memory}}
""")
    built: dict[str, MemoryAdapter] = {}

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        cls = MediaMemory if name == "mx" else MemoryAdapter
        built[name] = cls(name, net, cursors)
        return built[name]

    MediaMemory.files = {
        "hs/cat": (PNG, "image/png"),
        "hs/page": (b"<script>alert(1)</script>", "text/html"),
        "hs/big": (b"\0" * 5000, "application/octet-stream"),
    }
    async with Daemon(config, factory=build) as daemon, aiohttp.ClientSession() as http:
        signer = daemon.media_links
        assert signer is not None
        cat = signer.link("mx", "hs/cat", "cat.png")
        async with http.get(cat) as resp:
            assert resp.status == 200
            assert await resp.read() == PNG
            assert resp.headers["Content-Type"] == "image/png"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Content-Disposition"].startswith('inline; filename="cat.png"')

        # A page is never shown as one of the bridge's own: a sandboxed download.
        async with http.get(signer.link("mx", "hs/page", "x.html")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Disposition"].startswith("attachment;")
            assert "sandbox" in resp.headers["Content-Security-Policy"]

        network, sig, rest = tail_of(cat)
        base = f"http://127.0.0.1:{port}/media"
        forged = [
            f"{base}/{network}/{'B' if sig[0] == 'A' else 'A'}{sig[1:]}/{rest}",
            f"{base}/{network}/{sig}/hs/page/cat.png",  # another file under this signature
            f"{base}/plain/{sig}/{rest}",  # a network that holds no media
            f"{base}/{network}/{sig}/hs/cat/..%2F..%2Fetc%2Fpasswd",
        ]
        for url in forged:
            async with http.get(url) as resp:
                assert resp.status == 404, url
                assert PNG not in await resp.read()

        async with http.get(signer.link("mx", "hs/gone", "gone.png")) as resp:
            assert resp.status == 404
        async with http.get(signer.link("mx", "hs/big", "big.bin")) as resp:
            # Over the network's cap: the transfer is cut, never completed.
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        MediaMemory.broken = True
        try:
            async with http.get(cat) as resp:
                assert resp.status == 502
        finally:
            MediaMemory.broken = False

        # A link signed long ago no longer opens, and says why.
        old = MediaLinks(load_key(tmp_path), signer.public_url, lifetime_days=1, clock=lambda: 0)
        async with http.get(old.link("mx", "hs/cat", "cat.png")) as resp:
            assert resp.status == 410
            assert PNG not in await resp.read()


async def test_without_public_url_there_is_no_media_route(tmp_path: Path) -> None:
    port = free_port()
    config = parse_config(f"""
bridge:
  state_dir: {tmp_path}
  http: {{listen: "127.0.0.1:{port}"}}
networks:
  mx: {{type: memory}}
""")

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MediaMemory(name, net, cursors)

    MediaMemory.files = {"hs/cat": (PNG, "image/png")}
    signer = MediaLinks(b"k" * 32, f"http://127.0.0.1:{port}/")
    async with Daemon(config, factory=build) as daemon, aiohttp.ClientSession() as http:
        assert daemon.media_links is None
        async with http.get(signer.link("mx", "hs/cat", "cat.png")) as resp:
            assert resp.status == 404
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize(
    ("listen", "extra", "public"),
    [
        ("127.0.0.1", ', public_url: "http://127.0.0.1:{port}/"', True),
        ("0.0.0.0", "", True),  # noqa: S104 - the case under test: every interface
        ("127.0.0.1", "", False),
        ("localhost", "", False),
    ],
)
async def test_a_listener_beyond_loopback_warns_and_keeps_readyz_detail_to_the_token(
    tmp_path: Path, listen: str, extra: str, public: bool
) -> None:
    port = free_port()
    for token, warned in (("", public), (', metrics_token: "s3cret"', False)):
        http = f'{{listen: "{listen}:{port}"{extra.format(port=port)}{token}}}'
        config = parse_config(f"""
bridge:
  state_dir: {tmp_path}
  http: {http}
networks:
  mx: {{type: memory}}
""")
        readyz = f"http://127.0.0.1:{port}/readyz"
        with structlog.testing.capture_logs() as logs:
            async with Daemon(config), aiohttp.ClientSession() as http_client:
                async with http_client.get(readyz) as resp:
                    assert ("networks" in await resp.json()) is not public
                if token:
                    auth = {"Authorization": "Bearer s3cret"}
                    async with http_client.get(readyz, headers=auth) as resp:
                        assert "mx" in (await resp.json())["networks"]
        assert any(e["event"] == "metrics_without_token" for e in logs) is warned, (listen, token)


@pytest.mark.parametrize(
    ("listen", "public"),
    [("[::1]:1", False), ("127.0.0.2:1", False), ("[::]:1", True), ("10.0.0.5:1", True),
     ("bridge.internal:1", True)],
)  # fmt: skip
def test_only_loopback_listeners_count_as_private(listen: str, public: bool) -> None:
    assert is_public(HttpConfig(listen=listen)) is public
