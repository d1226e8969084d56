"""The one way the bridge creates its private directories and files: `state_dir` 0700,
every file in it 0600, whatever the umask of whoever started it (a shell with 022 makes
world-readable files by default, and the state holds the archive, keys and tokens).

Files are opened with `O_NOFOLLOW`, so a symlink planted where a state file belongs is
refused rather than followed to somewhere else; a newly created file's directory is
fsynced, so the file itself survives a power loss and not only its contents.

Existing directories keep their mode (`state_dir: .` must not lock the operator out of
the working directory); existing files are tightened by `restrict` where the caller
asks for it (the SQLite files, which hold every archived word).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Creates `path` (and missing parents) 0700; an existing directory is left alone."""
    missing: list[Path] = []
    at = path
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(created, DIR_MODE)  # mkdir's mode is masked by the umask
        fsync_dir(created.parent)
    return path


def fsync_dir(path: Path) -> None:
    """Makes a directory's entries (a file just created or renamed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_private(path: Path, flags: int) -> tuple[int, bool]:
    """Opens `path` with `flags` | O_CREAT | O_NOFOLLOW, creating it 0600 (its directory
    0700 if missing, and fsynced); returns the descriptor and whether it was created."""
    private_dir(path.parent)
    base = flags | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, base | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, base), False
    os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is masked by the umask too
    fsync_dir(path.parent)
    return fd, True


def create_private(path: Path, data: bytes) -> bool:
    """Writes `data` to a new 0600 file, durably; False (nothing written) if it exists."""
    private_dir(path.parent)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE
        )
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return True


def read_private(path: Path) -> bytes:
    """A state file's bytes, refusing a symlink in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def restrict(*paths: Path) -> None:
    """Takes group and other access away from existing files this process owns (a file
    owned by someone else, e.g. the service user's database read by root, is left as is)."""
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, FILE_MODE)
