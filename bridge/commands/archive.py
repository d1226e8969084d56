"""`imbridge archive search|verify|export|purge|checkpoint`: what an auditor runs against
the state database, while the daemon runs or not (SQLite WAL lets both read; writes wait
for each other).

Exit codes: 0 success (verify: intact), 1 verify found tampering or a runtime failure,
2 bad config or arguments.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.export import items, write_eml, write_jsonl
from imbridge.archive.retention import purge, truncate_wal
from imbridge.archive.search import Query, search, table
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.config.schema import Config
from imbridge.db import Database
from imbridge.errors import ConfigError, ImbridgeError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DB_NAME = "imbridge.db"  # the daemon's state database file, in bridge.state_dir


def parse_when(value: str | None, flag: str) -> datetime | None:
    """`2024-05-01` or an ISO 8601 time; without a zone, UTC."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{flag} {value!r}: expected a date like 2024-05-01 or 2024-05-01T12:00:00+02:00"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def open_archive(config: Config) -> tuple[Database, ArchiveStore]:
    db = Database(config.bridge.state_dir / DB_NAME, {"archive": ARCHIVE_MIGRATIONS})
    return db, ArchiveStore(config.archive, state_dir=config.bridge.state_dir)


def _run(
    config_path: Path,
    err: TextIO,
    work: Callable[[Config, Database, ArchiveStore], Awaitable[int]],
) -> int:
    """Loads the config, opens the archive, runs `work` and maps failures to exit codes."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{config_path}: {issue}", file=err)
        return EXIT_USAGE

    async def main() -> int:
        db, store = open_archive(config)
        async with db:
            return await work(config, db, store)

    try:
        result = asyncio.run(main())
    except ArchiveKeyError as exc:
        print(f"imbridge archive: {exc}", file=err)
        return EXIT_FAILURE
    except (ImbridgeError, sqlite3.Error, OSError) as exc:
        print(f"imbridge archive: {exc}", file=err)
        return EXIT_FAILURE
    return result


def archive_search(
    config_path: Path,
    query: str,
    *,
    network: str | None = None,
    room: str | None = None,
    user: str | None = None,
    since: str | None = None,
    until: str | None = None,
    fmt: str = "table",
    limit: int = 100,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Prints the newest `limit` archived events containing every word of `query`
    (room, user and network accept shell globs), with what happened at each destination."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        q = Query(
            text=query,
            network=network,
            room=room,
            user=user,
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
            limit=limit,
        )
    except ValueError as exc:
        print(f"imbridge archive search: {exc}", file=err)
        return EXIT_USAGE
    if fmt not in ("table", "json"):
        print(f"imbridge archive search: --format {fmt!r}: use table or json", file=err)
        return EXIT_USAGE

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        await db.transact(
            store.index_pending, background=True
        )  # what the daemon has not indexed yet
        hits = await db.read(lambda conn: search(conn, store, q), background=True)
        if fmt == "json":
            json.dump([h.as_json() for h in hits], out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            print(table(hits) if hits else "no matching records", file=out)
        return EXIT_OK

    return _run(config_path, err, work)


def archive_verify(
    config_path: Path, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Walks the hash chain against the purge records and the head file: exit 0 and a
    summary when intact, exit 1 naming the first bad record otherwise."""
    out, err = out or sys.stdout, err or sys.stderr

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        problem, count = await db.read(store.verify, background=True)
        if problem is not None:
            print(f"TAMPERED: {problem}", file=out)
            print(f"({count} records verified before it; head file {store.head_file})", file=out)
            return EXIT_FAILURE
        head = await db.read(store.tail, background=True)
        print(
            f"archive intact: {count} records verified, chain head {head.seq} "
            f"{head.hash.hex()[:16]}…",
            file=out,
        )
        return EXIT_OK

    return _run(config_path, err, work)


def archive_export(
    config_path: Path,
    *,
    fmt: str,
    output: Path | None = None,
    network: str | None = None,
    room: str | None = None,
    user: str | None = None,
    since: str | None = None,
    until: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`jsonl`: one event per line, with its decisions and deliveries, to `output` or
    stdout. `eml`: one RFC 5322 file per chat message in the directory `output`."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        q = Query(
            network=network,
            room=room,
            user=user,
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
        )
    except ValueError as exc:
        print(f"imbridge archive export: {exc}", file=err)
        return EXIT_USAGE
    if fmt not in ("jsonl", "eml"):
        print(f"imbridge archive export: --format {fmt!r}: use jsonl or eml", file=err)
        return EXIT_USAGE
    if fmt == "eml" and output is None:
        print("imbridge archive export: --format eml needs --output DIRECTORY", file=err)
        return EXIT_USAGE

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        def export(conn: sqlite3.Connection) -> int:
            found = items(conn, store, q)
            if fmt == "eml" and output is not None:
                return write_eml(found, output)
            if output is None:
                return write_jsonl(found, out)
            with output.open("w", encoding="utf-8") as f:
                return write_jsonl(found, f)

        n = await db.read(export, background=True)
        where = f" to {output}" if output is not None else ""
        print(f"exported {n} records{where}", file=err if output is None else out)
        return EXIT_OK

    return _run(config_path, err, work)


def archive_purge(
    config_path: Path, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Runs the retention purge now (the daemon runs it daily), then checkpoints."""
    out, err = out or sys.stdout, err or sys.stderr

    async def work(config: Config, db: Database, store: ArchiveStore) -> int:
        result = await db.transact(lambda conn: purge(store, conn), background=True)
        await db.read(truncate_wal, background=True)  # the purged pages leave the WAL
        await db.read(store.checkpoint, background=True)
        if result.seq is None:
            print(
                f"nothing older than {config.archive.retention_days} days to purge "
                f"({result.held} held)",
                file=out,
            )
        else:
            print(
                f"purged {result.deleted} records older than {result.cutoff:%Y-%m-%d} "
                f"in {result.runs} runs; {result.held} kept under legal hold; purge "
                f"recorded as record {result.seq}",
                file=out,
            )
        return EXIT_OK

    return _run(config_path, err, work)


def archive_checkpoint(
    config_path: Path, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Appends the current chain head to the head file now."""
    out, err = out or sys.stdout, err or sys.stderr

    async def work(_: Config, db: Database, store: ArchiveStore) -> int:
        head = await db.read(lambda conn: store.checkpoint(conn, force=True), background=True)
        print(f"chain head {head.seq} {head.hash.hex()} written to {store.head_file}", file=out)
        return EXIT_OK

    return _run(config_path, err, work)
