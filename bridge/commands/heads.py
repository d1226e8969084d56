"""`imbridge archive key|heads`: what an operator needs to keep a copy of the signed
chain heads off the host, where whoever can write the state directory cannot reach it.

`archive key` prints the public key (and its id) to check the heads with; `archive
heads` prints the signed head lines exactly as written (JSON Lines, for syslog, a log
server or object storage). `archive verify --heads FILE` then checks the archive against
that copy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from imbridge.archive.heads import public_text
from imbridge.archive.store import ArchiveStore
from imbridge.commands.archive import _run
from imbridge.config.schema import Config
from imbridge.db import Database
from imbridge.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def archive_key(config_path: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Prints `ed25519:BASE64 <key id>` for the heads' signing key (creating the key in
    state_dir, with a first signed head, if none exists yet, as the daemon would at its
    first checkpoint)."""
    out, err = out or sys.stdout, err or sys.stderr

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        if store.signer() is None:
            # A key made here must sign a head at once: a head file without signed
            # lines while a key exists is what an attacker's replacement looks like.
            await db.read(lambda conn: store.checkpoint(conn, force=True), background=True)
        signer = store.signer()
        if signer is None:  # pragma: no cover - the checkpoint made one
            return EXIT_FAILURE
        print(f"{public_text(signer.public)} {signer.key_id}", file=out)
        return EXIT_OK

    return _run(config_path, err, work)


def archive_heads(
    config_path: Path,
    *,
    since: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Prints the signed head lines (those after record `since`, if given), each exactly as the head
    file holds it; exit 1 (printing nothing) if the head file itself fails its check."""
    out, err = out or sys.stdout, err or sys.stderr
    if since is not None and since < 0:
        print("imbridge archive heads: --since must be 0 or more", file=err)
        return EXIT_USAGE

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        found = store.read_heads()
        if found is None:
            print(f"imbridge archive heads: {store.head_file} does not exist yet", file=err)
            return EXIT_FAILURE
        if found.problem is not None:
            print(f"TAMPERED: {found.problem}", file=err)
            return EXIT_FAILURE
        signed = [c for c in found.checkpoints if c.at_us is not None]
        for head, line in zip(signed, found.lines, strict=True):
            if since is None or head.seq > since:
                print(line, file=out)
        return EXIT_OK

    return _run(config_path, err, work)
