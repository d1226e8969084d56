"""Encryption at rest of archived message content, and a search index only the key
holder can use.

From each archive key, HKDF-SHA256 derives independent keys: one for AES-256-GCM over
each record's body, one for HMAC "blind" search tokens (every word is indexed as
HMAC(key, word), so full-text search works for whoever holds the key and reveals no words
to whoever holds only the database). Metadata (time, network, room, sender, decisions)
stays in clear, for filtering.

Keys rotate (`keyring`): the current key seals every new body and indexes every new
record; a body names the key that sealed it, so it opens under that key as long as the
keyring keeps it, and a word is searched under every key of the keyring.

`aesgcm2:<key id>:` bodies bind, as associated data, the record's sequence number and its
metadata (kind, event id, network, room, sender, destination, action, rule): a ciphertext
moved to another record, or a record whose sender or room was changed, no longer opens.
`aesgcm1:` bodies (before key ids) bound the sequence number only; they are still read,
under whichever key of the keyring opens them.
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

from pydantic import SecretStr

from imbridge.archive.keyring import ArchiveKeyError, Keyring

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "aesgcm1:"
PREFIX2 = "aesgcm2:"
BODY_INFO = b"imbridge archive body v1"
INDEX_INFO = b"imbridge archive index v1"
_AD_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Search words: case- and accent-insensitive, like FTS5's unicode61 tokenizer."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(stripped)


class Cipher:
    """Imports `cryptography` only when an archive key is configured: it costs ~6 MiB of
    resident memory that a bridge without encryption should not carry."""

    def __init__(self, secret: Keyring | SecretStr | str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        keyring = Keyring.of(secret)
        if keyring is None:  # pragma: no cover - the type forbids it
            raise ValueError("a Cipher needs a key")
        self.keyring = keyring
        self._aeads: dict[str, AESGCM] = {k.key_id: AESGCM(k.derive(BODY_INFO)) for k in keyring}
        self._indexes = tuple(k.derive(INDEX_INFO) for k in keyring)
        self.key_id = keyring.current.key_id
        self._aead = self._aeads[self.key_id]
        self._prefix = f"{PREFIX2}{self.key_id}:"

    def encrypt(self, plain: str, seq: int, *, bind: Sequence[Any] = ()) -> str:
        """Seals `plain` for record `seq` under the current key; `bind`: the record's
        other metadata, which must be given alike to open it."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), _associated(seq, bind))
        return self._prefix + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str, seq: int, *, bind: Sequence[Any] = ()) -> str:
        """The plain text of a sealed body (a plain one is returned as it is)."""
        return self.opened(stored, seq, bind=bind)[0]

    def opened(self, stored: str, seq: int, *, bind: Sequence[Any] = ()) -> tuple[str, str | None]:
        """The plain text and the id of the key that opened it (None: not encrypted)."""
        if stored.startswith(PREFIX2):
            kid, _, rest = stored[len(PREFIX2) :].partition(":")
            self.keyring.require(kid, f"record {seq}")
            candidates = [(kid, self._aeads[kid])]
            blob, ad = base64.b64decode(rest), _associated(seq, bind)
        elif stored.startswith(PREFIX):
            candidates = list(self._aeads.items())
            blob, ad = base64.b64decode(stored[len(PREFIX) :]), str(seq).encode()
        else:
            return stored, None
        for kid, aead in candidates:
            try:
                return aead.decrypt(blob[:12], blob[12:], ad).decode("utf-8"), kid
            except Exception:  # noqa: BLE001, S112 - InvalidTag: the next key may open it
                continue
        raise ArchiveKeyError(
            f"record {seq}: cannot decrypt (wrong key, or the record's metadata was changed)"
        )

    def authentic(self, stored: str, seq: int, bind: Sequence[Any]) -> str | None:
        """None when `stored` opens for this record; else why not (for `verify`)."""
        try:
            self.decrypt(stored, seq, bind=bind)
        except (ArchiveKeyError, ValueError) as exc:
            return str(exc).removeprefix(f"record {seq}: ")
        return None

    def token(self, word: str) -> str:
        """The word's token under the current key: what new records are indexed with."""
        return _token(self._indexes[0], word)

    def tokens(self, word: str) -> tuple[str, ...]:
        """The word's token under every key: a record indexed under any of them matches."""
        return tuple(_token(index, word) for index in self._indexes)

    def terms(self, text: str) -> str:
        return " ".join(self.token(w) for w in words(text))


def _token(index: bytes, word: str) -> str:
    return "t" + hmac.new(index, word.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def _associated(seq: int, bind: Sequence[Any]) -> bytes:
    return _AD_ENCODER.encode([seq, *bind]).encode("utf-8")


def is_encrypted(stored: str) -> bool:
    return stored.startswith((PREFIX2, PREFIX))


def key_id_of(stored: str) -> str | None:
    """The key id an `aesgcm2:` body names (None for any other)."""
    if not stored.startswith(PREFIX2):
        return None
    return stored[len(PREFIX2) :].partition(":")[0]


__all__ = ["ArchiveKeyError", "Cipher", "is_encrypted", "key_id_of", "words"]
