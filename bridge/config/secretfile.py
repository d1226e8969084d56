"""Reads a `*_file` secret only when it is the operator's own private file.

A secret file readable by the group or by everyone has leaked already, and one owned by
another user (or reached through a symbolic link someone else controls) can be swapped
for a password the attacker knows: either way the bridge refuses to start on it, with
the reason, rather than authenticate with it. The file is opened without following a
final symbolic link, and its owner and mode are read from the opened descriptor, so
nothing can change between the check and the read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_SECRET_BYTES = 64 * 1024
"""A password, token or key is at most a few kilobytes."""


class SecretFileError(Exception):
    """Why a secret file was refused, in words for the config report."""


def read_secret(path: Path, *, credentials: str | None = None) -> bytes:
    """The file's bytes; `credentials` is systemd's `$CREDENTIALS_DIRECTORY`, whose files
    systemd itself keeps to the service (with an ACL where it cannot chown, which shows
    as group bits in the mode), so their mode is not held against them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SecretFileError(
                f"{path} is a symbolic link: point the key at the file itself"
            ) from None
        raise SecretFileError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        managed = credentials is not None and path.parent == Path(credentials)
        _check(path, os.fstat(fd), managed=managed)
        data = b""
        while len(data) <= MAX_SECRET_BYTES and (chunk := os.read(fd, MAX_SECRET_BYTES + 1)):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"{path} is over {MAX_SECRET_BYTES} bytes: not a secret")
    return data


def _check(path: Path, info: os.stat_result, *, managed: bool) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{path} is not a regular file")
    if info.st_uid not in (os.geteuid(), 0):
        raise SecretFileError(
            f"{path} is owned by uid {info.st_uid}, not by this user or root: "
            "whoever owns it can change the secret"
        )
    if info.st_mode & 0o077 and not managed:
        mode = stat.S_IMODE(info.st_mode)
        raise SecretFileError(f"{path} is open to other users (mode {mode:04o}): chmod 600 {path}")
