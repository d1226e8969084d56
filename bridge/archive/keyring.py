"""The archive's encryption keys: the current one, which seals everything written from
now on, and the retired ones, kept only so that what they sealed still opens.

`archive.encryption_key_file` holds one key a line, the current key first. Rotating is
prepending a new line: records, relay rows and files written before stay readable,
searchable and verifiable under the key that wrote them, everything new uses the new
one, and a retired key can go once retention has removed all it sealed.

Every part derives its own key from each archive key here, with the HKDF labels it has
always used, and the key id from the same secret: a file holding one key gives the ids,
names and ciphertexts it gave before rotation existed.

Parsing (`key_lines`) needs no cryptography, so the config check can run it; building a
`Keyring` imports `cryptography` (see `crypto.Cipher` for why that import is late).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

MIN_LENGTH = 32
KEY_ID_INFO = b"imbridge archive key id v1"
GENERATE = "head -c 32 /dev/urandom | base64"


class ArchiveKeyError(ValueError):
    """Encrypted content met without the key, or with the wrong one."""


def key_lines(text: str) -> list[tuple[int, str]]:
    """The keys of a key file with their line numbers, current first; blank lines are
    skipped. A ValueError names the line, never the key."""
    keys: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        key = line.strip()
        if not key:
            continue
        if len(key) < MIN_LENGTH:
            where = f"the key on line {number}" if len(lines) > 1 else "the key"
            raise ValueError(f"{where} must be at least {MIN_LENGTH} characters, e.g. `{GENERATE}`")
        if key in seen:
            raise ValueError(f"the key on line {number} repeats the key on line {seen[key]}")
        seen[key] = number
        keys.append((number, key))
    if not keys:
        raise ValueError(f"holds no key: give one of at least {MIN_LENGTH} characters")
    return keys


def derive(secret: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - see module docstring
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@dataclass(frozen=True, slots=True)
class ArchiveKey:
    key_id: str
    """Derived from the secret, so it names the key without revealing anything of it."""
    line: int
    """Its line in the key file: 1 is the current key."""
    _secret: bytes = field(repr=False)

    @classmethod
    def of(cls, secret: str, line: int = 1) -> ArchiveKey:
        raw = secret.strip().encode("utf-8")
        return cls(derive(raw, KEY_ID_INFO)[:8].hex(), line, raw)

    def derive(self, info: bytes) -> bytes:
        """This key's own key for one purpose (`info`: the purpose's HKDF label)."""
        return derive(self._secret, info)


class Keyring:
    """The keys of `archive.encryption_key_file`: `current` seals, `all` open."""

    __slots__ = ("_by_id", "all", "current")

    def __init__(self, keys: Sequence[ArchiveKey]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self.all: tuple[ArchiveKey, ...] = tuple(keys)
        self.current = self.all[0]
        self._by_id = {k.key_id: k for k in self.all}

    @classmethod
    def parse(cls, text: str) -> Keyring:
        return cls([ArchiveKey.of(key, line) for line, key in key_lines(text)])

    @classmethod
    def of(cls, secret: Keyring | SecretStr | str | None) -> Keyring | None:
        """The keyring for what a part was given: the config's secret (its text), or a
        keyring already built; None (no encryption) passes through."""
        if secret is None or isinstance(secret, Keyring):
            return secret
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        return cls.parse(secret)

    def __iter__(self) -> Iterator[ArchiveKey]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.all)

    def get(self, key_id: str) -> ArchiveKey | None:
        return self._by_id.get(key_id)

    def require(self, key_id: str, what: str) -> ArchiveKey:
        """The key `what` was sealed with, or an error naming the missing key id."""
        key = self._by_id.get(key_id)
        if key is None:
            raise ArchiveKeyError(
                f"{what}: encrypted with key {key_id}, which archive.encryption_key_file "
                f"does not hold (it holds {', '.join(self.ids)}): add that key as a "
                "retired key (a line after the current one)"
            )
        return key


__all__ = ["MIN_LENGTH", "ArchiveKey", "ArchiveKeyError", "Keyring", "derive", "key_lines"]
