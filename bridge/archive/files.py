"""The archive's attachment bytes, content-addressed under `state_dir/archive-files/`.

A deletion at the source (a Matrix redaction, a media purge, an expired upload) must not
destroy the evidence, so the bytes themselves are kept, once per content: two messages
carrying the same file share one stored copy. Every file is written whole or not at all
(a temporary file, fsync, rename, fsync of the directory), mode 0600 in 0700 folders
whatever the umask.

Without an archive key a file is stored as is and named by the SHA-256 of its bytes, so
anyone can check it with `sha256sum`. With a key, two promises hold:

* no plaintext byte reaches the disk: the content is sealed with AES-256-GCM in 64 KiB
  chunks as it streams in (STREAM construction: a random 7-byte prefix, a chunk counter
  and a last-chunk flag make each nonce, so chunks cannot be dropped, reordered or cut
  off), under a key derived from the archive key by HKDF ("imbridge archive file v1");
* the file's name reveals nothing: it is an HMAC of the content's digest under another
  derived key, so someone holding only `state_dir` cannot test whether a known document
  is in the archive by looking for its SHA-256. The plain digest lives only in the
  (encrypted) chained `file` record, and export checks the bytes against it.

Keys rotate (`keyring`): a new file is sealed under the current key, named by the HMAC
under that key, and its header names the key (`IMBF2`); a file written before keeps
its name and opens under the retired key that wrote it (`find` looks for each key's
name, current first). `IMBF1` files (before key ids) open under whichever key opens
their first chunk.

No database access here: which record refers to which file is `capture`'s business.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from imbridge.archive.keyring import ArchiveKeyError, Keyring
from imbridge.config.schema import Archive

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FILES_DIR = "archive-files"
CHUNK = 65536
TAG = 16
MAGIC = b"IMBF1\n"
MAGIC2 = b"IMBF2\n"
"""Followed by the 8 bytes of the sealing key's id."""
KEY_ID_BYTES = 8
FILE_INFO = b"imbridge archive file v1"
NAME_INFO = b"imbridge archive file name v1"
PREFIX_BYTES = 7
SWEEP_GRACE_SECONDS = 3600.0
"""A file younger than this is never swept as unreferenced: its record may still be on
its way to the database (the file is renamed into place before the record commits)."""

_NAME = re.compile(r"[0-9a-f]{64}")


class FileStoreError(Exception):
    """A stored file is missing, unreadable or does not match its digest."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    """Hex SHA-256 of the plain bytes: what the chained record and the export carry."""
    size: int
    file_id: str
    """The name on disk: the digest itself, or its keyed HMAC when encrypted."""


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">I?", counter, last)


class FileStore:
    def __init__(self, root: Path, secret: Keyring | str | None = None) -> None:
        self.root = root
        self.keyring = Keyring.of(secret)
        self._aeads: dict[str, AESGCM] = {}
        self._name_keys: tuple[bytes, ...] = ()
        if self.keyring is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

            self._aeads = {k.key_id: AESGCM(k.derive(FILE_INFO)) for k in self.keyring}
            self._name_keys = tuple(k.derive(NAME_INFO) for k in self.keyring)

    @classmethod
    def for_archive(cls, settings: Archive, state_dir: Path) -> FileStore:
        key = settings.encryption_key
        return cls(state_dir / FILES_DIR, key.get_secret_value() if key is not None else None)

    @property
    def encrypted(self) -> bool:
        return self.keyring is not None

    def sealing(self) -> tuple[str, AESGCM] | None:
        """The current key's id and cipher, which new files are sealed with."""
        if self.keyring is None:
            return None
        kid = self.keyring.current.key_id
        return kid, self._aeads[kid]

    def file_id(self, sha256: str) -> str:
        """The name a file with this content gets when written now."""
        return self.names(sha256)[0]

    def names(self, sha256: str) -> tuple[str, ...]:
        """The names this content has under each key, the current key's first."""
        if not self._name_keys:
            return (sha256,)
        digest = bytes.fromhex(sha256)
        return tuple(hmac.new(k, digest, hashlib.sha256).hexdigest() for k in self._name_keys)

    def find(self, sha256: str) -> str:
        """The stored file holding this content, under whichever key wrote it (the
        current key's name when none is there: reading it then says it is missing)."""
        names = self.names(sha256)
        for name in names:
            if self.path(name).is_file():
                return name
        return names[0]

    def path(self, file_id: str) -> Path:
        if not _NAME.fullmatch(file_id):
            raise FileStoreError(f"not a stored file name: {file_id[:80]!r}")
        return self.root / file_id[:2] / file_id[2:4] / file_id

    def _mkdir(self, path: Path) -> None:
        for d in (self.root, path.parent.parent, path.parent):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)
            os.chmod(d, 0o700)  # whatever the umask, or a folder made before

    # -- writing ------------------------------------------------------------------------

    def writer(self) -> FileWriter:
        """A file being received; `commit` names and keeps it, `abort` drops it."""
        self._mkdir(self.root / "tmp" / "x")
        fd, tmp = _temp(self.root / "tmp")
        return FileWriter(self, os.fdopen(fd, "wb"), Path(tmp))

    def put(self, data: bytes) -> StoredFile:
        with self.writer() as w:
            for i in range(0, len(data), CHUNK):
                w.write(data[i : i + CHUNK])
            return w.commit()

    # -- reading ------------------------------------------------------------------------

    def chunks(self, file_id: str) -> Iterator[bytes]:
        """The plain bytes of a stored file (decrypted and authenticated chunk by chunk)."""
        try:
            f = self.path(file_id).open("rb")
        except FileNotFoundError:
            raise FileStoreError(f"stored file {file_id[:16]}… is missing") from None
        with f:
            if self.keyring is None:
                while block := f.read(CHUNK):
                    yield block
                return
            candidates, prefix = self._header(f, file_id)
            counter = 0
            block = f.read(CHUNK + TAG)
            while True:
                following = f.read(CHUNK + TAG)
                last = not following
                nonce = _nonce(prefix, counter, last)
                for kid, aead in candidates:
                    try:
                        plain = aead.decrypt(nonce, block, None)
                    except Exception:  # noqa: BLE001, S112 - InvalidTag: try the next key
                        continue
                    candidates = [(kid, aead)]  # the key that opened the first chunk
                    break
                else:
                    raise ArchiveKeyError(
                        f"stored file {file_id[:16]}…: cannot decrypt (wrong key or altered)"
                    )
                yield plain
                if last:
                    return
                block, counter = following, counter + 1

    def key_of(self, file_id: str) -> str | None:
        """The id of the key that sealed a stored file: the one its header names, or,
        for a file from before key ids, the key of the keyring that opens it (None: in
        clear, unreadable, or no key opens it)."""
        if self.keyring is None:
            return None  # stored in clear: a header-like start is content
        try:
            with self.path(file_id).open("rb") as f:
                magic = f.read(len(MAGIC))
                if magic == MAGIC2:
                    return f.read(KEY_ID_BYTES).hex()
                if magic != MAGIC:
                    return None
                prefix = f.read(PREFIX_BYTES)
                block = f.read(CHUNK + TAG)
                last = not f.read(1)
        except (FileStoreError, OSError):
            return None
        for kid, aead in self._aeads.items():
            try:
                aead.decrypt(_nonce(prefix, 0, last), block, None)
            except Exception:  # noqa: BLE001, S112 - InvalidTag: try the next key
                continue
            return kid
        return None

    def _header(self, f: BinaryIO, file_id: str) -> tuple[list[tuple[str, AESGCM]], bytes]:
        """The keys that may open a file (the one its header names, or, for a file from
        before key ids, every key) and its nonce prefix."""
        if self.keyring is None:
            raise FileStoreError(f"stored file {file_id[:16]}…: no archive key configured")
        magic = f.read(len(MAGIC))
        if magic == MAGIC2:
            kid = f.read(KEY_ID_BYTES).hex()
            self.keyring.require(kid, f"stored file {file_id[:16]}…")
            candidates = [(kid, self._aeads[kid])]
        elif magic == MAGIC:
            candidates = list(self._aeads.items())
        else:
            raise FileStoreError(f"stored file {file_id[:16]}… is not encrypted")
        return candidates, f.read(PREFIX_BYTES)

    def read_checked(self, file_id: str, sha256: str) -> bytes:
        """The plain bytes, proven to be those the record names."""
        data = b"".join(self.chunks(file_id))
        if hashlib.sha256(data).hexdigest() != sha256:
            raise FileStoreError(f"stored file {file_id[:16]}… does not match its digest")
        return data

    # -- removing -----------------------------------------------------------------------

    def ids(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/??/*"):
            if _NAME.fullmatch(path.name):
                yield path.name

    def remove(self, file_id: str) -> bool:
        try:
            self.path(file_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def sweep(self, referenced: set[str], *, now: float | None = None) -> int:
        """Deletes every stored file no record refers to any more (after a purge), except
        very recent ones; returns how many went."""
        now = time.time() if now is None else now
        gone = 0
        for file_id in list(self.ids()):
            if file_id in referenced:
                continue
            path = self.path(file_id)
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime >= SWEEP_GRACE_SECONDS:
                    path.unlink()
                    gone += 1
        for tmp in (self.root / "tmp").glob("*") if (self.root / "tmp").is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if now - tmp.stat().st_mtime >= SWEEP_GRACE_SECONDS:
                    tmp.unlink()  # left by a crash mid-download
        return gone


def _temp(directory: Path) -> tuple[int, str]:
    while True:
        name = directory / f"{secrets.token_hex(8)}.part"
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), str(
                name
            )
        except FileExistsError:
            continue


class FileWriter:
    """Hashes the plain bytes and writes them (sealed, when a key is set) to a temporary
    file; nothing is visible under a content name before `commit`."""

    def __init__(self, store: FileStore, out: BinaryIO, tmp: Path) -> None:
        self._store = store
        self._out = out
        self._tmp = tmp
        self._hash = hashlib.sha256()
        self._size = 0
        self._pending = b""
        self._counter = 0
        self._prefix = secrets.token_bytes(PREFIX_BYTES)
        self._done = False
        os.fchmod(out.fileno(), 0o600)
        sealing = store.sealing()
        self._aead = sealing[1] if sealing is not None else None
        if sealing is not None:
            out.write(MAGIC2 + bytes.fromhex(sealing[0]) + self._prefix)

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        aead = self._aead
        if aead is None:
            self._out.write(data)
            return
        self._pending += data
        while len(self._pending) > CHUNK:  # keep the last chunk back: it gets the flag
            block, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            self._out.write(aead.encrypt(_nonce(self._prefix, self._counter, False), block, None))
            self._counter += 1

    def commit(self) -> StoredFile:
        aead = self._aead
        if aead is not None:
            self._out.write(
                aead.encrypt(_nonce(self._prefix, self._counter, True), self._pending, None)
            )
            self._pending = b""
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        sha = self._hash.hexdigest()
        file_id = self._store.file_id(sha)
        final = self._store.path(file_id)
        self._store._mkdir(final)
        if final.exists():
            # Already kept (dedup): refresh its age so a sweep running now spares it.
            os.utime(final)
            self._tmp.unlink()
        else:
            os.replace(self._tmp, final)
            dirfd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        self._done = True
        return StoredFile(sha, self._size, file_id)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
