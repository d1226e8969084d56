"""Console accounts: names, roles and argon2id password hashes in one 0600 JSON file in
`state_dir` (`console-users.json`), written whole or not at all.

Roles are ordered: a reviewer searches, reads and works the review queue; an auditor may
also export, verify and read the audit log; an admin may also place and lift legal holds.
Each user carries a `stamp` derived from the hash, which sessions quote: changing a
password or deleting the account ends every session signed in with the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from imbridge import statefiles
from imbridge.errors import ImbridgeError

USERS_FILE = "console-users.json"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10


class Role(IntEnum):
    REVIEWER = 1
    AUDITOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise UserError(f"unknown role {text!r}: use reviewer, auditor or admin") from None


class UserError(ImbridgeError):
    """A refused account change: bad name, short password, unknown user."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    hash: str
    created: str

    @property
    def stamp(self) -> str:
        return hashlib.sha256(self.hash.encode()).hexdigest()[:16]


class UserStore:
    """Reads the file again whenever it changed on disk, so `imbridge console user ...`
    applies to a running console at once."""

    def __init__(self, state_dir: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = state_dir / USERS_FILE
        self.hasher = hasher or PasswordHasher()  # argon2id, the library's RFC 9106 profile
        self._cache: tuple[tuple[int, int], dict[str, User]] | None = None
        self._dummy = self.hasher.hash("not a password of anyone")

    def users(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        data = json.loads(statefiles.read_private(self.path))
        found = {
            name: User(name, Role.parse(u["role"]), u["hash"], u.get("created", ""))
            for name, u in data.get("users", {}).items()
        }
        self._cache = (key, found)
        return found

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password is theirs. An unknown name costs a hash all the same,
        so timing does not tell which names exist."""
        user = self.get(name)
        try:
            self.hasher.verify(user.hash if user else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        return user

    def add(self, name: str, role: Role, password: str) -> User:
        if not NAME.fullmatch(name):
            raise UserError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        users = dict(self.users())
        if name in users:
            raise UserError(f"user {name!r} exists; use `console user passwd` to change it")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        users[name] = User(name, role, self._hash(password), created)
        self._write(users)
        return users[name]

    def passwd(self, name: str, password: str) -> User:
        users = dict(self.users())
        old = users.get(name)
        if old is None:
            raise UserError(f"no user {name!r}")
        users[name] = User(name, old.role, self._hash(password), old.created)
        self._write(users)
        return users[name]

    def delete(self, name: str) -> None:
        users = dict(self.users())
        if users.pop(name, None) is None:
            raise UserError(f"no user {name!r}")
        self._write(users)

    def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
        return self.hasher.hash(password)

    def _write(self, users: dict[str, User]) -> None:
        data = {
            "version": 1,
            "users": {
                u.name: {"role": u.role.label, "hash": u.hash, "created": u.created}
                for u in sorted(users.values(), key=lambda u: u.name)
            },
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        statefiles.create_private(tmp, (json.dumps(data, indent=2) + "\n").encode())
        os.replace(tmp, self.path)
        statefiles.fsync_dir(self.path.parent)
        self._cache = None
