"""Signed links to media the bridge relayed, served by its own HTTP listener.

Some networks keep their media behind credentials (Matrix authenticated media): a plain
link to it opens for nobody on another network. The bridge instead relays a link to
itself, `{public_url}media/{network}/{expires}.{sig}/{ref}/{filename}`, and fetches the
media with its own credentials when the link is opened. The signature, an HMAC under a
key that never leaves the state directory, covers the network, the adapter's reference,
the file name and the expiry, so the route serves only what the bridge itself linked,
under the name it linked it with (nobody turns `invoice.pdf` into `invoice.pdf.exe`),
and only until the link expires: nobody can use it to fetch other media with the
bridge's account, or keep a leaked link working for ever. The name still only ever
lands in a Content-Disposition header.

No I/O here beyond reading or creating the key once; the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from imbridge import statefiles

KEY_FILE = "media-links.key"
SIG_BYTES = 16  # 128 bits: forging one link means guessing this
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
PROXY_TIMEOUT = 120.0  # seconds for a whole proxied download, headers to last byte
DEFAULT_LIFETIME_DAYS = 30

# Each ref segment: what Matrix server names and media ids are made of, and nothing that
# could mean a path step (`.`/`..` are refused apart).
_SEGMENT = re.compile(r"[A-Za-z0-9._~:\[\]-]{1,255}")
_STAMP = re.compile(r"[0-9]{1,12}")
_FORBIDDEN_IN_NAME = re.compile(r"[\x00-\x1f\x7f/\\\"]")


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """A verified request for one relayed piece of media."""

    network: str
    ref: str
    filename: str
    expired: bool = False
    """Signed here, but past its expiry: the route answers 410 Gone."""


def safe_filename(name: str) -> str | None:
    """`name` if it can only be a file name (no path, no control characters), else None."""
    if not name or len(name) > 255 or name in (".", "..") or _FORBIDDEN_IN_NAME.search(name):
        return None
    return name


def valid_ref(ref: str) -> bool:
    segments = ref.split("/")
    return all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)


def load_key(state_dir: Path) -> bytes:
    """The signing key, created once (0600) so links stay valid across restarts."""
    path = state_dir / KEY_FILE
    if statefiles.create_private(path, secrets.token_bytes(32)):
        return statefiles.read_private(path)
    key = statefiles.read_private(path)
    if len(key) < 32:
        raise ValueError(f"{path}: signing key is shorter than 32 bytes")
    return key


class MediaLinks:
    """Makes and checks the bridge's signed media links; adapters get one to link with."""

    def __init__(
        self,
        key: bytes,
        public_url: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        lifetime_days: int = DEFAULT_LIFETIME_DAYS,
        clock: Callable[[], float] = time.time,
    ):
        if len(key) < 32:
            raise ValueError("signing key must be at least 32 bytes")
        self._key = key
        self.public_url = public_url if public_url.endswith("/") else public_url + "/"
        self.max_bytes = max_bytes
        self.lifetime = lifetime_days * 86400
        self._clock = clock

    @classmethod
    def from_state(
        cls, state_dir: Path, public_url: str, *, lifetime_days: int = DEFAULT_LIFETIME_DAYS
    ) -> MediaLinks:
        return cls(load_key(state_dir), public_url, lifetime_days=lifetime_days)

    def _sign(self, network: str, ref: str, filename: str, expires: int) -> str:
        # NUL cannot occur in a network name, a valid ref or a safe file name, and the
        # expiry is digits: no two tuples sign alike.
        message = f"{network}\0{ref}\0{filename}\0{expires}".encode()
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:SIG_BYTES]).rstrip(b"=").decode()

    def link(self, network: str, ref: str, filename: str) -> str:
        """The public link for `ref` (slash-separated segments the adapter understands)."""
        if not valid_ref(ref):
            raise ValueError(f"not a linkable media reference: {ref[:80]!r}")
        name = safe_filename(filename) or "file"
        expires = int(self._clock()) + self.lifetime
        return (
            f"{self.public_url}media/{quote(network, safe='')}/"
            f"{expires}.{self._sign(network, ref, name, expires)}/{ref}/{quote(name, safe='')}"
        )

    def verify(self, network: str, sig: str, tail: str) -> MediaRequest | None:
        """The request a link's path stands for, or None for anything not signed here.

        `sig` is the path segment `{expires}.{signature}`; `tail` the decoded path after
        it: the ref's segments, then the name.
        """
        ref, _, filename = tail.rpartition("/")
        name = safe_filename(filename)
        stamp, dot, given = sig.partition(".")
        if name is None or not valid_ref(ref) or not _STAMP.fullmatch(stamp) or not dot:
            return None
        expires = int(stamp)
        if not hmac.compare_digest(
            given.encode(), self._sign(network, ref, name, expires).encode()
        ):
            return None
        expired = self._clock() >= expires
        return MediaRequest(network=network, ref=ref, filename=name, expired=expired)
