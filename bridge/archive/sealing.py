"""Sealing of what the relay keeps outside the archive: the quoting copy of each message
and the outbox payloads.

The archive encrypts what it records, but the relay also keeps message text for its
own work (a reply quotes its original; a queued delivery holds the event until its
network takes it). With an archive key set, those copies must not sit in clear beside
the encrypted archive: each is sealed with AES-256-GCM under a key HKDF derives from the
same secret with its own label, so it is independent of the archive's record and index
keys. The associated data names the table and the row's key, so a sealed payload cannot
be moved to another row. Rows written before a key was set stay readable: they lack the
prefix and are returned as they are (retention removes them in time).
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from imbridge.archive.crypto import _derive

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed1:"
INFO = b"imbridge relay state seal v1"


class SealError(ValueError):
    """A sealed payload met without the key, or one that does not open with it."""


class Sealer:
    """Seals and opens payloads; without a secret it passes them through unchanged.

    `cryptography` is imported only when a secret is given, as `crypto.Cipher` does, so a
    bridge without a key does not carry it."""

    __slots__ = ("_aead",)

    def __init__(self, secret: str | None = None) -> None:
        self._aead: AESGCM | None = None
        if secret is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

            self._aead = AESGCM(_derive(secret.strip().encode("utf-8"), INFO))

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, plain: str, *, table: str, key: str) -> str:
        if self._aead is None:
            return plain
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), _context(table, key))
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, *, table: str, key: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before a key was configured
        if self._aead is None:
            raise SealError(f"{table} row {key} is sealed: configure archive.encryption_key_file")
        blob = base64.b64decode(stored[len(PREFIX) :])
        try:
            plain = self._aead.decrypt(blob[:12], blob[12:], _context(table, key))
        except Exception as exc:  # InvalidTag and friends: one clear error
            raise SealError(f"{table} row {key} does not open (wrong key?)") from exc
        return plain.decode("utf-8")


def _context(table: str, key: str) -> bytes:
    return f"{table}\0{key}".encode()


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


__all__ = ["PREFIX", "SealError", "Sealer", "is_sealed"]
