"""`imbridge archive search|verify|export|purge|checkpoint`: what an auditor runs against
the state database, while the daemon runs or not (SQLite WAL lets both read; writes wait
for each other).

Exit codes: 0 success (verify: intact), 1 verify found tampering or a runtime failure,
2 bad config or arguments.

Each command leaves an `access` record in the chain (`imbridge archive audit` lists them);
a search shows its results only once that record is written, so an auditor who cannot
write the trail sees nothing. Long walks show a progress bar on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from imbridge.archive.actor import Actor
from imbridge.archive.audit import log_access
from imbridge.archive.capture import sweep
from imbridge.archive.chain import Problem
from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.export import Item, items, write_eml, write_jsonl
from imbridge.archive.exportfiles import FILES, Carrier, write_jsonl_files, write_zip
from imbridge.archive.files import FileStore
from imbridge.archive.heads import SigningKeyError, parse_public
from imbridge.archive.keyuse import key_usage
from imbridge.archive.retention import DAY_US, PurgeResult, purge, truncate_wal
from imbridge.archive.search import Query, filters, search, table
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.commands.progress import Advance, progress
from imbridge.config.load import load_config
from imbridge.config.report import print_config_error
from imbridge.config.schema import Config
from imbridge.db import Conn, Database, location
from imbridge.dialect import dialect_of, streamed
from imbridge.errors import ConfigError, ImbridgeError
from imbridge.exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


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


def filters_of(q: Query) -> dict[str, object]:
    """A query's filters as an access record keeps them."""
    return {
        "text": q.text or None,
        "network": q.network,
        "room": q.room,
        "user": q.user,
        "since": q.since.isoformat() if q.since else None,
        "until": q.until.isoformat() if q.until else None,
    }


async def accessed(
    db: Database, store: ArchiveStore, action: str, query: Mapping[str, object], results: int
) -> None:
    """The `access` record of one command run by this process's user."""
    await log_access(db, store, Actor.of_process(), action, query=query, results=results)


def open_archive(config: Config) -> tuple[Database, ArchiveStore]:
    db = Database(location(config.bridge), {"archive": ARCHIVE_MIGRATIONS})
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
        print_config_error(config_path, exc, err)
        return EXIT_USAGE

    async def main() -> int:
        db, store = open_archive(config)
        async with db:
            return await work(config, db, store)

    try:
        result = asyncio.run(main())
    except (ArchiveKeyError, SigningKeyError) as exc:
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
        with progress("searching", None, stream=err, unit="hits") as advance:
            hits = await db.read(
                lambda conn: search(conn, store, q, advance=advance), background=True
            )
        query = {**filters_of(q), "limit": limit}
        await accessed(db, store, "search", query, len(hits))
        if fmt == "json":
            json.dump([h.as_json() for h in hits], out, ensure_ascii=False, indent=2)
            out.write("\n")
        else:
            print(table(hits) if hits else "no matching records", file=out)
        return EXIT_OK

    return _run(config_path, err, work)


def archive_verify(
    config_path: Path,
    *,
    heads: Sequence[Path] = (),
    public_key: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Walks the hash chain against the purge records, the signed head file and any
    external copies of it (`heads`, as `archive heads` printed them; signatures checked
    against `public_key`, default the configured key's): exit 0 and a summary when
    intact, exit 1 naming the first bad record otherwise."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        public = parse_public(public_key) if public_key is not None else None
    except SigningKeyError as exc:
        print(f"imbridge archive verify: --public-key: {exc}", file=err)
        return EXIT_USAGE

    async def work(config: Config, db: Database, store: ArchiveStore) -> int:
        tail = await db.read(store.tail, background=True)

        def walk(conn: Conn) -> tuple[Problem | None, int]:
            with streamed(conn) as rows:
                total = rows.execute("SELECT count(*) FROM archive_records").fetchone()[0]
                with progress("verify", total, stream=err) as advance:
                    return store.verify(rows, external=heads, public=public, advance=advance)

        problem, count = await db.read(walk, background=True)
        if problem is not None:
            print(f"TAMPERED: {problem}", file=out)
            witnesses = ", ".join(str(p) for p in (store.head_file, *heads))
            print(f"({count} records verified before it; heads from {witnesses})", file=out)
        else:
            signer = store.signer()
            key = f", heads signed by key {signer.key_id}" if signer is not None else ""
            print(
                f"archive intact: {count} records verified, chain head {tail.seq} "
                f"{tail.hash.hex()[:16]}…{key}",
                file=out,
            )
            for path in heads:
                print(f"agrees with the external heads in {path}", file=out)
        if store.cipher is not None:  # which keys are still needed, for rotation
            files = FileStore.for_archive(config.archive, config.bridge.state_dir)
            cipher = store.cipher
            usage = await db.read(lambda c: key_usage(c, cipher, files), background=True)
            for line in usage.lines(cipher.keyring):
                print(line, file=out)
        try:
            await accessed(db, store, "verify", {"intact": problem is None}, count)
        except (ImbridgeError, sqlite3.Error, OSError) as exc:
            # The verdict matters more than its audit line; on a tampered archive the
            # chain may not even take a new record.
            print(f"imbridge archive verify: not recorded in the audit trail: {exc}", file=err)
            return EXIT_FAILURE
        return EXIT_OK if problem is None else EXIT_FAILURE

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
    """`jsonl`: one event per line, with its decisions, deliveries and files, to `output`
    (the attachments in `files/` beside it) or stdout (no files). `eml`: one RFC 5322
    file per chat message in the directory `output`, attachments as MIME parts. `zip`:
    the jsonl, the files and a manifest of their digests in the one file `output`."""
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
    if fmt not in ("jsonl", "eml", "zip"):
        print(f"imbridge archive export: --format {fmt!r}: use jsonl, eml or zip", file=err)
        return EXIT_USAGE
    if fmt in ("eml", "zip") and output is None:
        what = "DIRECTORY" if fmt == "eml" else "FILE"
        print(f"imbridge archive export: --format {fmt} needs --output {what}", file=err)
        return EXIT_USAGE

    async def work(config: Config, db: Database, store: ArchiveStore) -> int:
        carrier = Carrier(FileStore.for_archive(config.archive, config.bridge.state_dir))

        def export(db_conn: Conn) -> int:
            with (
                streamed(db_conn) as conn,
                progress("exporting", count_events(conn, q), stream=err) as advance,
            ):
                found = counted(items(conn, store, q), advance)
                if output is None:
                    return write_jsonl(found, out)
                if fmt == "eml":
                    return write_eml(found, output, carrier.read)
                if fmt == "zip":
                    return write_zip(found, output, carrier)
                with output.open("w", encoding="utf-8") as f:
                    return write_jsonl_files(found, f, output.parent / FILES, carrier)

        n = await db.read(export, background=True)
        query = {**filters_of(q), "format": fmt, "output": str(output) if output else None}
        await accessed(db, store, "export", query, n)
        where = f" to {output}" if output is not None else ""
        print(f"exported {n} records{where}", file=err if output is None else out)
        for problem in carrier.problems:
            print(f"imbridge archive export: attachment left out: {problem}", file=err)
        return EXIT_FAILURE if carrier.problems else EXIT_OK

    return _run(config_path, err, work)


def count_events(conn: Conn, q: Query) -> int:
    clauses, params = filters(q, dialect_of(conn), prefix="")
    sql = f"SELECT count(*) FROM archive_records WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed clauses
    return int(conn.execute(sql, params).fetchone()[0])


def counted(found: Iterator[Item], advance: Advance) -> Iterator[Item]:
    for item in found:
        advance(1)
        yield item


def purge_with_progress(conn: Conn, store: ArchiveStore, err: TextIO) -> PurgeResult:
    """The purge, with a bar over the records old enough to go (held ones included)."""
    cutoff_us = store.clock() - store.settings.retention_days * DAY_US
    (total,) = conn.execute(
        "SELECT count(*) FROM archive_records WHERE ts_us < ?", (cutoff_us,)
    ).fetchone()
    with progress("purging", int(total), stream=err) as advance:
        return purge(store, conn, advance=advance)


def archive_purge(
    config_path: Path, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Runs the retention purge now (the daemon runs it daily), then checkpoints."""
    out, err = out or sys.stdout, err or sys.stderr

    async def work(config: Config, db: Database, store: ArchiveStore) -> int:
        result = await db.transact(
            lambda conn: purge_with_progress(conn, store, err), background=True
        )
        await db.read(truncate_wal, background=True)  # the purged pages leave the WAL
        await db.read(store.checkpoint, background=True)
        query = {
            "retention_days": config.archive.retention_days,
            "holds": [h.name for h in config.archive.legal_hold],
            "cutoff": result.cutoff.isoformat(),
        }
        await accessed(db, store, "purge", query, result.deleted)
        await sweep(db, FileStore.for_archive(config.archive, config.bridge.state_dir))
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
