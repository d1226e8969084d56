"""Encryption at rest of archived message content, and a search index only the key
holder can use.

From the configured secret, HKDF-SHA256 derives independent keys: one for AES-256-GCM
over each record's body, one for HMAC "blind" search tokens (every word is indexed as
HMAC(key, word), so full-text search works for whoever holds the key and reveals no words
to whoever holds only the database), and a key id, recorded with every ciphertext, so a
record sealed under another key is named as such rather than failing as garbage.
Metadata (time, network, room, sender, decisions) stays in clear, for filtering.

`aesgcm2:<key id>:` bodies bind, as associated data, the record's sequence number and its
metadata (kind, event id, network, room, sender, destination, action, rule): a ciphertext
moved to another record, or a record whose sender or room was changed, no longer opens.
`aesgcm1:` bodies (before key ids) bound the sequence number only; they are still read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "aesgcm1:"
PREFIX2 = "aesgcm2:"
_AD_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
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
        self.key_id = _derive(raw, b"imbridge archive key id v1")[:8].hex()
        self._prefix = f"{PREFIX2}{self.key_id}:"

    def encrypt(self, plain: str, seq: int, *, bind: Sequence[Any] = ()) -> str:
        """Seals `plain` for record `seq`; `bind`: the record's other metadata, which
        must be given alike to open it."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), _associated(seq, bind))
        return self._prefix + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, seq: int, *, bind: Sequence[Any] = ()) -> str:
        """The plain text of a sealed body (a plain one is returned as it is)."""
        if stored.startswith(PREFIX):
            blob, ad = base64.b64decode(stored[len(PREFIX) :]), str(seq).encode()
        elif stored.startswith(PREFIX2):
            kid, _, rest = stored[len(PREFIX2) :].partition(":")
            if kid != self.key_id:
                raise ArchiveKeyError(
                    f"record {seq}: encrypted with key {kid}, not with the configured key "
                    f"{self.key_id}"
                )
            blob, ad = base64.b64decode(rest), _associated(seq, bind)
        else:
            return stored
        try:
            return self._aead.decrypt(blob[:12], blob[12:], ad).decode("utf-8")
        except Exception as exc:  # InvalidTag and friends: one clear error
            raise ArchiveKeyError(
                f"record {seq}: cannot decrypt (wrong key, or the record's metadata was changed)"
            ) from exc

    def authentic(self, stored: str, seq: int, bind: Sequence[Any]) -> str | None:
        """None when `stored` opens for this record; else why not (for `verify`)."""
        try:
            self.decrypt(stored, seq, bind=bind)
        except (ArchiveKeyError, ValueError) as exc:
            return str(exc).removeprefix(f"record {seq}: ")
        return None

    def token(self, word: str) -> str:
        return "t" + hmac.new(self._index, word.encode("utf-8"), hashlib.sha256).hexdigest()[:20]

    def terms(self, text: str) -> str:
        return " ".join(self.token(w) for w in words(text))


def _associated(seq: int, bind: Sequence[Any]) -> bytes:
    return _AD_ENCODER.encode([seq, *bind]).encode("utf-8")


def is_encrypted(stored: str) -> bool:
    return stored.startswith((PREFIX2, PREFIX))
