"""Encryption at rest of archived message content, and a search index only the key
holder can use.

From the configured secret, HKDF-SHA256 derives two independent keys: one for AES-256-GCM
over each record's body (the nonce is random, the record's sequence number is the
associated data, so a ciphertext cannot be moved to another record), and one for HMAC
"blind" search tokens: every word is indexed as HMAC(key, word), so full-text search works
for whoever holds the key and reveals no words to whoever holds only the database.
Metadata (time, network, room, sender, decisions) stays in clear, for filtering.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "aesgcm1:"
_WORD = re.compile(r"\w+")


class ArchiveKeyError(ValueError):
    """Encrypted content met without the key, or with the wrong one."""


def words(text: str) -> list[str]:
    """Search words: case- and accent-insensitive, like FTS5's unicode61 tokenizer."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(stripped)


def _derive(secret: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - see Cipher
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class Cipher:
    """Imports `cryptography` only when an archive key is configured: it costs ~6 MiB of
    resident memory that a bridge without encryption should not carry."""

    def __init__(self, secret: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        raw = secret.strip().encode("utf-8")
        self._aead: AESGCM = AESGCM(_derive(raw, b"imbridge archive body v1"))
        self._index = _derive(raw, b"imbridge archive index v1")

    def encrypt(self, plain: str, seq: int) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), str(seq).encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, seq: int) -> str:
        if not stored.startswith(PREFIX):
            return stored
        blob = base64.b64decode(stored[len(PREFIX) :])
        try:
            return self._aead.decrypt(blob[:12], blob[12:], str(seq).encode()).decode("utf-8")
        except Exception as exc:  # InvalidTag and friends: one clear error
            raise ArchiveKeyError(f"record {seq}: cannot decrypt (wrong key?)") from exc

    def token(self, word: str) -> str:
        return "t" + hmac.new(self._index, word.encode("utf-8"), hashlib.sha256).hexdigest()[:20]

    def terms(self, text: str) -> str:
        return " ".join(self.token(w) for w in words(text))


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)
