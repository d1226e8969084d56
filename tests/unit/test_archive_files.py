"""The attachment file store and the address guard, as a compliance officer and a
sysadmin would check them: one copy per content, nothing readable by others, no
plaintext byte on disk with a key, nothing fetched from inside the network."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.files import CHUNK, SWEEP_GRACE_SECONDS, FileStore, FileStoreError
from imbridge.safefetch import RefusedURL, is_public, open_url, origin_of

KEY = "k" * 40
SECRET_BYTES = b"MERGER-FIGURES-" * 9000  # > 2 chunks, a word easy to grep for


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def on_disk(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_same_bytes_are_stored_once_private_to_the_bridge(tmp_path: Path, key: str | None) -> None:
    store = FileStore(tmp_path / "files", key)
    first = store.put(SECRET_BYTES)
    second = store.put(SECRET_BYTES)
    other = store.put(b"another file")
    assert first == second
    assert first.sha256 == hashlib.sha256(SECRET_BYTES).hexdigest()
    assert first.size == len(SECRET_BYTES)
    files = on_disk(tmp_path / "files")
    assert sorted(p.name for p in files) == sorted({first.file_id, other.file_id})
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for d in [tmp_path / "files", *(p for p in (tmp_path / "files").rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert b"".join(store.chunks(first.file_id)) == SECRET_BYTES
    assert store.read_checked(other.file_id, other.sha256) == b"another file"


def test_plain_store_names_files_by_their_sha256(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    kept = store.put(b"evidence")
    assert kept.file_id == hashlib.sha256(b"evidence").hexdigest()
    assert store.path(kept.file_id).read_bytes() == b"evidence"  # sha256sum checks it


def test_encrypted_store_keeps_no_plaintext_byte_nor_the_digest(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    kept = store.put(SECRET_BYTES)
    small = store.put(b"MERGER")
    for path in on_disk(tmp_path):
        raw = path.read_bytes()
        assert b"MERGER" not in raw
        assert kept.sha256 not in path.name
        assert bytes.fromhex(kept.sha256) not in raw
    assert small.file_id != hashlib.sha256(b"MERGER").hexdigest()
    assert store.read_checked(kept.file_id, kept.sha256) == SECRET_BYTES
    # Only the key holder reads it back.
    with pytest.raises(ArchiveKeyError):
        b"".join(FileStore(tmp_path, "x" * 40).chunks(kept.file_id))


@pytest.mark.parametrize(
    "damage",
    ["flip", "cut_last_chunk", "drop_middle_chunk"],
)
def test_an_altered_encrypted_file_is_refused(tmp_path: Path, damage: str) -> None:
    store = FileStore(tmp_path, KEY)
    kept = store.put(SECRET_BYTES)
    path = store.path(kept.file_id)
    raw = bytearray(path.read_bytes())
    block = CHUNK + 16
    header = len(raw) - (len(SECRET_BYTES) + 16 * (len(SECRET_BYTES) // CHUNK + 1))
    if damage == "flip":
        raw[-5] ^= 1
    elif damage == "cut_last_chunk":
        raw = raw[: header + 2 * block]
    else:
        raw = raw[: header + block] + raw[header + 2 * block :]
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveKeyError):
        b"".join(store.chunks(kept.file_id))


def test_a_plain_file_altered_on_disk_fails_its_digest(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    kept = store.put(b"the original")
    store.path(kept.file_id).write_bytes(b"a forgery")
    with pytest.raises(FileStoreError, match="does not match"):
        store.read_checked(kept.file_id, kept.sha256)
    store.remove(kept.file_id)
    with pytest.raises(FileStoreError, match="missing"):
        store.read_checked(kept.file_id, kept.sha256)


def test_an_aborted_download_leaves_nothing_behind(tmp_path: Path) -> None:
    store = FileStore(tmp_path, KEY)
    with store.writer() as w:
        w.write(b"half a file")
    assert on_disk(tmp_path) == []


def test_sweep_removes_unreferenced_files_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    kept = store.put(b"still referenced")
    purged = store.put(b"purged record")
    fresh = store.put(b"record not committed yet")
    old = 1_000_000.0
    for f in (kept, purged):
        os.utime(store.path(f.file_id), (old, old))
    gone = store.sweep({kept.file_id}, now=old + SWEEP_GRACE_SECONDS + 1)
    assert gone == 1
    assert sorted(store.ids()) == sorted([kept.file_id, fresh.file_id])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("fe80::1", False),
        ("fd00::1", False),  # unique-local
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("0.0.0.0", False),  # noqa: S104 - the address under test, nothing listens
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("240.0.0.1", False),
        ("not an address", False),
    ],
)
def test_only_public_addresses_are_fetched(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://files.example.org/x",
        "gopher://example.org/",
        "http://127.0.0.1:9465/metrics",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/internal",
        "https://[fd00::5]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
    ],
)
async def test_internal_or_non_http_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(RefusedURL):
        async with open_url(url, allow_origins=frozenset(), timeout=1):
            pass


def test_origins_are_compared_with_their_port() -> None:
    assert origin_of("http://127.0.0.1/x") == "http://127.0.0.1:80"
    assert origin_of("HTTPS://Files.Corp/x") == "https://files.corp:443"
    assert origin_of("http://[::1]:8080/") == "http://[::1]:8080"
    assert origin_of("file:///x") is None
