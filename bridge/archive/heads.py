"""Signed chain heads: the head file, its Ed25519 key, and external copies of it.

Whoever can write the database can recompute the whole chain; the head file is what
they must also rewrite, and a signature is what they cannot forge without the key. So
each head line carries the sequence number, hash and time of the head, the id of the
key that signed it and an Ed25519 signature over a canonical encoding of those four.
The key is created once in `state_dir` (0600) or given as `archive.signing_key_file`
(e.g. a systemd credential kept apart from the database). Lines shipped off the host
(`imbridge archive heads`) are checked the same way by `verify --heads`: an attacker who
holds the local key and re-signs a rewritten local file still cannot change those.

Unsigned lines are legacy only before the first signed line (written by a version
without signing); one after it was added by someone else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imbridge import statefiles
from imbridge.archive.chain import Checkpoint, Head, Problem, iso, us_of
from imbridge.config.schema import Archive

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

KEY_FILE = "archive-signing.key"
HEAD_FILE = "archive-heads.jsonl"
PUBLIC_PREFIX = "ed25519:"
_DOMAIN = b"imbridge archive head v1\n"
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def head_path(settings: Archive, state_dir: Path) -> Path:
    if settings.head_file is None:
        return state_dir / HEAD_FILE
    return (
        settings.head_file if settings.head_file.is_absolute() else state_dir / settings.head_file
    )


class SigningKeyError(ValueError):
    """A signing or public key that cannot be read."""


def signed_bytes(seq: int, digest: str, at_us: int, kid: str) -> bytes:
    """What a head's signature covers: a fixed domain tag, then the four fields."""
    return _DOMAIN + _ENCODER.encode([seq, digest, at_us, kid]).encode("utf-8")


def key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see Signer

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_text(public: Ed25519PublicKey) -> str:
    """The public key as one word, for `archive key` and `verify --public-key`."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public(text: str) -> Ed25519PublicKey:
    """`ed25519:BASE64` (as `archive key` prints it), bare base64, or a PEM public key."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise SigningKeyError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the PEM public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_PREFIX), validate=True)
    except binascii.Error:
        raise SigningKeyError(f"{text[:60]!r} is not an {PUBLIC_PREFIX}BASE64 public key") from None
    if len(raw) != 32:
        raise SigningKeyError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def parse_private(data: bytes, where: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) private key, as this module writes it, or 32 bytes of seed in
    base64 (e.g. `openssl rand -base64 32`)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{where}: not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{where}: the private key is not an Ed25519 key")
        return key
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != 32:
        raise SigningKeyError(f"{where}: expected a PEM Ed25519 key or 32 bytes in base64")
    return Ed25519PrivateKey.from_private_bytes(seed)


class Signer:
    """Signs heads. Imports `cryptography` only when a head is written or checked."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.key_id = key_id(self.public)

    @classmethod
    def load(cls, path: Path, *, create: bool) -> Signer | None:
        """The key in `path`, created 0600 on first use when `create`; None if absent."""
        if create and not path.exists():
            from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
            from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
                Ed25519PrivateKey,
            )

            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            statefiles.create_private(path, pem)  # False: another process made it first
        try:
            data = statefiles.read_private(path)
        except FileNotFoundError:
            return None
        return cls(parse_private(data, str(path)))

    def line(self, head: Head, at_us: int) -> str:
        digest = head.hash.hex()
        sig = self._key.sign(signed_bytes(head.seq, digest, at_us, self.key_id))
        return _ENCODER.encode(
            {
                "seq": head.seq,
                "hash": digest,
                "at": iso(at_us),
                "key": self.key_id,
                "sig": base64.b64encode(sig).decode("ascii"),
            }
        )


def append_line(path: Path, line: str) -> None:
    """Appends one line durably: append-only, never through a symlink, created 0600 with
    its directory fsynced."""
    fd, _ = statefiles.open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class HeadLines:
    """What a head file holds: every usable head, how many were signed, and the first
    problem (None: every line is what the bridge wrote)."""

    checkpoints: tuple[Checkpoint, ...]
    signed: int
    lines: tuple[str, ...]
    """The signed lines as written, for shipping them elsewhere unchanged."""
    problem: Problem | None = None


def read_heads(
    path: Path, public: Ed25519PublicKey | None, *, external: bool = False
) -> HeadLines | None:
    """The heads in `path`, signatures checked against `public`; None if there is no
    such file. An external copy must be signed throughout."""
    try:
        text = statefiles.read_private(path).decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return HeadLines((), 0, (), Problem(0, f"{path} is not UTF-8 text: altered"))
    kid = key_id(public) if public is not None else None
    found: list[Checkpoint] = []
    kept: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{'the external heads' if external else 'the head file'} ({path} line {n})"
        try:
            data = json.loads(raw)
            head = _parse(data, where)
        except (ValueError, KeyError, TypeError):
            reason: str | None = "is unreadable"
        else:
            reason = _flaw(data, head, public, kid, unsigned_ok=not (external or kept))
        if reason is not None:
            return HeadLines(tuple(found), len(kept), tuple(kept), Problem(0, f"{where} {reason}"))
        if "sig" in data:
            kept.append(raw)
        found.append(head)
    return HeadLines(tuple(found), len(kept), tuple(kept))


def _flaw(
    data: dict[str, Any],
    head: Checkpoint,
    public: Ed25519PublicKey | None,
    kid: str | None,
    *,
    unsigned_ok: bool,
) -> str | None:
    """What is wrong with one head line, or None."""
    if "sig" not in data:
        if unsigned_ok:
            return None
        return "is unsigned (a head line written or altered by someone else)"
    if public is None or kid is None:
        return "is signed, but there is no key to check it (give --public-key)"
    if data.get("key") != kid:
        return f"is signed by key {data.get('key')}, not by {kid}"
    if not _valid(public, data, head):
        return "has a bad signature: altered or forged"
    return None


def _parse(data: Any, where: str) -> Checkpoint:
    seq = data["seq"]
    if type(seq) is not int:
        raise TypeError(seq)
    digest = bytes.fromhex(data["hash"])
    at = us_of(datetime.fromisoformat(data["at"])) if "sig" in data else None
    return Checkpoint(seq, digest, where, at)


def _valid(public: Ed25519PublicKey, data: dict[str, Any], head: Checkpoint) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    try:
        sig = base64.b64decode(data["sig"], validate=True)
        public.verify(sig, signed_bytes(head.seq, head.hash.hex(), head.at_us or 0, data["key"]))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
