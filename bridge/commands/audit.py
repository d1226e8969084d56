"""`imbridge archive audit`: the trail an auditor reads to learn who looked at the archive,
which configs were in force and when each legal hold was placed or lifted.

Reading the trail is itself an access, recorded after the listing (so it shows in the
next one). Without the archive key the queries of access records stay hidden; who, when
and what command do not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from imbridge.archive.audit import AUDIT_KINDS, entries, table
from imbridge.archive.store import ArchiveStore
from imbridge.commands.archive import _run, accessed, parse_when
from imbridge.config.schema import Config
from imbridge.db import Database
from imbridge.exitcodes import EXIT_OK, EXIT_USAGE


def archive_audit(
    config_path: Path,
    *,
    since: str | None = None,
    kind: str | None = None,
    fmt: str = "table",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Lists `access`, `config` and `hold` records in chain order (`kind`: one of them),
    from `since` on, as a table or a JSON array."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        start = parse_when(since, "--since")
    except ValueError as exc:
        print(f"imbridge archive audit: {exc}", file=err)
        return EXIT_USAGE
    if fmt not in ("table", "json"):
        print(f"imbridge archive audit: --format {fmt!r}: use table or json", file=err)
        return EXIT_USAGE
    if kind is not None and kind not in AUDIT_KINDS:
        print(f"imbridge archive audit: --kind {kind!r}: use {', '.join(AUDIT_KINDS)}", file=err)
        return EXIT_USAGE
    since_us = int(start.timestamp() * 1_000_000) if start is not None else None
    kinds = (kind,) if kind is not None else AUDIT_KINDS

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        found = await db.read(
            lambda conn: list(entries(conn, store, since_us=since_us, kinds=kinds)),
            background=True,
        )
        query = {"since": start.isoformat() if start else None, "kind": kind}
        await accessed(db, store, "audit", query, len(found))
        if fmt == "json":
            json.dump([e.as_json() for e in found], out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            print(table(found) if found else "no audit records", file=out)
        return EXIT_OK

    return _run(config_path, err, work)
