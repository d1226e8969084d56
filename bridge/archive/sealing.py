"""Sealing of what the relay keeps outside the archive: the quoting copy of each message,
the outbox payloads and the keys of reactions.

The archive encrypts what it records, but the relay also keeps message text for its
own work (a reply quotes its original; a queued delivery holds the event until its
network takes it). With an archive key set, those copies must not sit in clear beside
the encrypted archive: each is sealed with AES-256-GCM under a key HKDF derives from the
same secret with its own label, so it is independent of the archive's record and index
keys. The associated data names the table and the row's key, so a sealed payload cannot
be moved to another row. Rows written before a key was set stay readable: they lack the
prefix and are returned as they are (retention removes them in time).

A payload is sealed under the current key of the keyring and names it
(`sealed2:<key id>:`), so after a rotation a delivery queued under the retired key still
opens and goes out: a pending outbox item is never lost to a new key. `sealed1:`
payloads (before key ids) open under whichever key of the keyring opens them.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

from pydantic import SecretStr

from imbridge.archive.keyring import ArchiveKeyError, Keyring

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed1:"
PREFIX2 = "sealed2:"
INFO = b"imbridge relay state seal v1"


class SealError(ValueError):
    """A sealed payload met without the key, or one that does not open with it."""


class Sealer:
    """Seals and opens payloads; without a secret it passes them through unchanged.

    `cryptography` is imported only when a secret is given, as `crypto.Cipher` does, so a
    bridge without a key does not carry it."""

    __slots__ = ("_aeads", "_current", "keyring")

    def __init__(self, secret: Keyring | SecretStr | str | None = None) -> None:
        self.keyring = Keyring.of(secret)
        self._aeads: dict[str, AESGCM] = {}
        self._current = ""
        if self.keyring is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

            self._aeads = {k.key_id: AESGCM(k.derive(INFO)) for k in self.keyring}
            self._current = self.keyring.current.key_id

    @property
    def enabled(self) -> bool:
        return self.keyring is not None

    def seal(self, plain: str, *, table: str, key: str) -> str:
        if self.keyring is None:
            return plain
        nonce = os.urandom(12)
        sealed = self._aeads[self._current].encrypt(
            nonce, plain.encode("utf-8"), _context(table, key)
        )
        return f"{PREFIX2}{self._current}:" + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, *, table: str, key: str) -> str:
        return self.opened(stored, table=table, key=key)[0]

    def opened(self, stored: str, *, table: str, key: str) -> tuple[str, str | None]:
        """The plain payload and the id of the key that opened it (None: not sealed)."""
        if not is_sealed(stored):
            return stored, None  # written before a key was configured
        if self.keyring is None:
            raise SealError(f"{table} row {key} is sealed: configure archive.encryption_key_file")
        if stored.startswith(PREFIX2):
            kid, _, rest = stored[len(PREFIX2) :].partition(":")
            try:
                self.keyring.require(kid, f"{table} row {key}")
            except ArchiveKeyError as exc:
                raise SealError(str(exc)) from None
            candidates = [(kid, self._aeads[kid])]
        else:
            rest = stored[len(PREFIX) :]
            candidates = list(self._aeads.items())
        blob = base64.b64decode(rest)
        for kid, aead in candidates:
            try:
                return aead.decrypt(blob[:12], blob[12:], _context(table, key)).decode(), kid
            except Exception:  # noqa: BLE001, S112 - InvalidTag: the next key may open it
                continue
        raise SealError(f"{table} row {key} does not open (wrong key?)")


def _context(table: str, key: str) -> bytes:
    return f"{table}\0{key}".encode()


def is_sealed(stored: str) -> bool:
    return stored.startswith((PREFIX2, PREFIX))


def key_id_of(stored: str) -> str | None:
    """The key id a `sealed2:` payload names (None for any other)."""
    if not stored.startswith(PREFIX2):
        return None
    return stored[len(PREFIX2) :].partition(":")[0]


__all__ = ["PREFIX", "PREFIX2", "SealError", "Sealer", "is_sealed", "key_id_of"]
