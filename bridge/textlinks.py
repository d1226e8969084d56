"""The full text of a long message, behind a signed link, for networks that read it in
lines (IRC).

A message past a destination's `Capabilities.max_lines` would flood an IRC channel for
minutes, line after paced line. When `bridge.http.public_url` is set, the core instead
sends its first lines and a link, `{public_url}text/{expires}.{sig}/{key}.txt`, to the
whole of it as it would have been shown there (prefix, policy redactions and all). The
text is kept, sealed like the quoting copies, in the state database (`long_texts`), and
served by the bridge's listener as `text/plain; charset=utf-8` with `nosniff`; it goes
with the archive's retention (the purge deletes the rows, the link expires then too).

The signature is an HMAC under the media-link key (`medialinks`), over a domain of its
own, so a media link can never be turned into a text link or back. No I/O here beyond the
caller's transaction; the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from imbridge.adapter import Capabilities
from imbridge.archive.sealing import Sealer
from imbridge.db import Conn
from imbridge.sanitize import truncate_utf8

SIG_BYTES = 16
TABLE = "long_texts"
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE long_texts (
        key      TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        payload  TEXT NOT NULL,
        created  REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX long_texts_created ON long_texts (created);
    """,
)
"""The `textlinks` component's schema (`Database` migrations, beside the core's)."""

_KEY = re.compile(r"[0-9a-z]{1,64}")
_STAMP = re.compile(r"[0-9]{1,12}")
MORE = "…"


@dataclass(frozen=True, slots=True)
class TextRequest:
    key: str
    expired: bool


class TextLinks:
    """Makes and checks links to long texts; holds no text itself."""

    def __init__(
        self,
        key: bytes,
        public_url: str,
        *,
        lifetime_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < 32:
            raise ValueError("signing key must be at least 32 bytes")
        self._key = key
        self.public_url = public_url if public_url.endswith("/") else public_url + "/"
        self.lifetime = lifetime_days * 86400
        self._clock = clock

    def _sign(self, key: str, expires: int) -> str:
        message = f"text\0{key}\0{expires}".encode()
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:SIG_BYTES]).rstrip(b"=").decode()

    def link(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError("not a text key")
        expires = int(self._clock()) + self.lifetime
        return f"{self.public_url}text/{expires}.{self._sign(key, expires)}/{key}.txt"

    def verify(self, sig: str, name: str) -> TextRequest | None:
        """The text a link's last two path segments stand for, or None if not signed
        here."""
        key, dot, ext = name.partition(".")
        stamp, sep, given = sig.partition(".")
        if ext != "txt" or not dot or not sep or not _KEY.fullmatch(key):
            return None
        if not _STAMP.fullmatch(stamp):
            return None
        expires = int(stamp)
        if not hmac.compare_digest(given.encode(), self._sign(key, expires).encode()):
            return None
        return TextRequest(key=key, expired=self._clock() >= expires)


def key_for(txn_id: str) -> str:
    """The text's key: its delivery's transaction id, stable on every retry."""
    return txn_id.lower()


def lines_needed(text: str, line_bytes: int) -> int:
    """How many lines of `line_bytes` the text takes (blank lines are not sent)."""
    return sum(
        math.ceil(len(line.encode("utf-8")) / line_bytes)
        for line in text.split("\n")
        if line.strip()
    )


def too_long(text: str, caps: Capabilities) -> bool:
    return (
        caps.max_lines > 0
        and caps.line_bytes > 0
        and (lines_needed(text, caps.line_bytes) > caps.max_lines)
    )


def head(text: str, caps: Capabilities, link: str) -> str:
    """The first lines of `text` that fit `max_lines - 1` lines, then the link: what a
    network reading in lines shows of a long message."""
    room = max(1, caps.max_lines - 1)
    kept: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        need = lines_needed(line, caps.line_bytes)
        if need <= room:
            kept.append(line)
            room -= need
            continue
        budget = room * caps.line_bytes - len(MORE.encode())
        if budget > 0:
            cut = truncate_utf8(line, budget)
            space = cut.rfind(" ")
            kept.append((cut[:space] if space > len(cut) // 2 else cut) + MORE)
        break
    return "\n".join([*kept, f"[full text: {link}]"])


def store_sync(conn: Conn, key: str, event_id: str, text: str, sealer: Sealer) -> None:
    """Keeps the full text, in the relay's transaction (sealed when a key is set)."""
    payload = sealer.seal(text, table=TABLE, key=key)
    conn.execute(
        "INSERT INTO long_texts VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (key, event_id, payload, time.time()),
    )


def load_sync(conn: Conn, key: str, sealer: Sealer) -> str | None:
    row = conn.execute("SELECT payload FROM long_texts WHERE key = ?", (key,)).fetchone()
    return sealer.open(str(row[0]), table=TABLE, key=key) if row else None


__all__ = [
    "MIGRATIONS",
    "TextLinks",
    "TextRequest",
    "head",
    "key_for",
    "lines_needed",
    "load_sync",
    "store_sync",
    "too_long",
]
