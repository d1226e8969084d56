"""Writes secret files the way an operator must: private to their owner (0600).

The config loader refuses `*_file` secrets that the group or others may read, and the
default umask makes 0644 files, so every test that hands the bridge a secret file
writes it here.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, content: str | bytes) -> Path:
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        f.write(data)
    return path
