"""`imbridge db migrate` against a real PostgreSQL: a state filled by a daemon on memory
adapters moves over whole, its archive verifies and searches alike there, a daemon on
the copy goes on where the SQLite one stopped, and an interrupted copy resumes without
a row twice."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from imbridge import dbcopy
from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.commands.archive import archive_search, archive_verify
from imbridge.commands.dbmigrate import db_migrate
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.db import DB_NAME, Database
from imbridge.dialect import tables
from imbridge.errors import PermanentSendError
from imbridge.testing import eventually
from tests.servers.process import free_port

KEY = "k" * 44


def write_config(
    folder: Path, *, key: bool, database: str | None = None, listen: str | None = None
) -> Path:
    archive = f"archive: {{encryption_key: {KEY}}}\n" if key else ""
    url = f"  database: '{database}'\n" if database else ""
    url += f"  http: {{listen: '{listen}'}}\n" if listen else ""
    name = "pg.yaml" if database else "bridge.yaml"
    path = folder / name
    path.write_text(
        f"bridge:\n  state_dir: '{folder / 'state'}'\n{url}"
        "networks:\n  a: {type: memory}\n  b: {type: memory}\n"
        "gateways:\n  g:\n    rooms:\n"
        "      - {network: a, room: '#x'}\n      - {network: b, room: '#y'}\n" + archive
    )
    return path


async def start(config: Path, hub: MemoryHub) -> Daemon:
    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    daemon = Daemon(load_config(config), factory=build)
    await daemon.start()
    assert await daemon.ready(10)
    assert daemon.outbox is not None
    daemon.outbox.backoff_base = 0.01
    return daemon


def texts(hub: MemoryHub, room: str) -> list[str]:
    return [p.text for p in hub.in_room(room)]


def adapter(daemon: Daemon, name: str) -> MemoryAdapter:
    found = daemon.adapters[name]
    assert isinstance(found, MemoryAdapter)
    return found


def server(first_id: int) -> MemoryHub:
    """A fresh "server" numbering its messages from `first_id`: a real server never
    hands out an id twice, and the id map keeps those of the runs before."""
    return MemoryHub(_ids=itertools.count(first_id))


async def fill(config: Path, messages: int = 0, *, first_id: int = 0) -> None:
    """A day of relaying: messages, a reply, an edit, a reaction, a delivery refused for
    good, and one still waiting for an offline network when the daemon stops."""
    hub = server(first_id)
    daemon = await start(config, hub)
    first = hub.post("#x", "alice", "wombat figures for Tuesday")
    relayed = "<alice@a> wombat figures for Tuesday"
    await eventually(lambda: relayed in texts(hub, "#y"))
    copy = next(p for p in hub.in_room("#y") if p.text == relayed)
    hub.post("#y", "bob", "numbat agreed", reply_to=copy.remote_id)
    hub.post("#x", "alice", "wombat figures for Wednesday", kind="edit", target=first.remote_id)
    hub.post("#x", "carol", "quokka", kind="reaction", target=first.remote_id)
    adapter(daemon, "b").failures.append(PermanentSendError("room gone"))
    hub.post("#x", "alice", "platypus never arrives")
    for i in range(messages):
        hub.post("#x", "dave", f"echidna {i}")
    hub.post("#x", "alice", "delivered sentinel")
    await eventually(
        lambda: texts(hub, "#y")[-1:] == ["<alice@a> delivered sentinel"],
        20,
        explain=lambda: repr(texts(hub, "#y")),
    )
    adapter(daemon, "b").online = False
    hub.post("#x", "alice", "pending bilby")
    await eventually(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 1)
    await daemon.stop(drain=0)


def table_rows(conn: Any, table: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(f'"{c}"' for c in COLUMNS[table])
    keys = ", ".join(next(t.key for t in dbcopy.TABLES if t.name == table))
    return [
        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
        for row in conn.execute(f"SELECT {cols} FROM {table} ORDER BY {keys}").fetchall()  # noqa: S608 - fixed names
    ]


COLUMNS: dict[str, list[str]] = {}


def source_rows(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    src = sqlite3.connect(folder / "state" / DB_NAME)
    try:
        present = tables(src)  # the console's appear with the console (or the copy)
        for t in dbcopy.TABLES:
            COLUMNS[t.name] = dbcopy.columns(src, t.name)
        return {t.name: table_rows(src, t.name) if t.name in present else [] for t in dbcopy.TABLES}
    finally:
        src.close()


def target_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {t.name: table_rows(conn, t.name) for t in dbcopy.TABLES}


def indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        ).fetchall()
    return {str(r[0]) for r in rows}


async def migrated_schema(url: str) -> set[str]:
    """The target's schema made as the daemon makes it; returns its indexes."""
    db = Database(url, dbcopy.migrations())
    await db.open()
    await db.aclose()
    return indexes(url)


def hits(config: Path, words: str) -> list[dict[str, Any]]:
    """`archive search` (its own event loop: called in a thread by the async tests)."""
    out = io.StringIO()
    assert archive_search(config, words, fmt="json", out=out, err=io.StringIO()) == 0
    found: list[dict[str, Any]] = json.loads(out.getvalue())
    return found


@pytest.mark.parametrize("key", [False, True], ids=["plain", "encrypted"])
async def test_migrated_state_verifies_searches_alike_and_the_daemon_goes_on(
    tmp_path: Path, postgres_url: str, key: bool
) -> None:
    config = write_config(tmp_path, key=key)
    await fill(config)
    words = ("wombat", "numbat Tuesday", "quokka", "platypus")
    before = {w: await asyncio.to_thread(hits, config, w) for w in words}
    assert before["wombat"]
    assert before["numbat Tuesday"] == []
    expected = source_rows(tmp_path)
    schema = await migrated_schema(postgres_url)

    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(db_migrate, config, to=postgres_url, out=out, err=err)
    assert (code, err.getvalue()) == (0, "")
    assert "archive intact on the target" in out.getvalue()
    assert "database_url_file:" in out.getvalue()
    copied = target_rows(postgres_url)
    assert copied == expected
    assert indexes(postgres_url) == schema  # the full-text index is built at the end
    state = COLUMNS["outbox"].index("state")
    assert [r[state] for r in copied["outbox"]] == ["failed", "pending"]
    with psycopg.connect(postgres_url) as conn:
        assert dbcopy.PROGRESS_TABLE not in {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables").fetchall()
        }

    moved = write_config(tmp_path, key=key, database=postgres_url)
    verified = io.StringIO()
    code = await asyncio.to_thread(archive_verify, moved, out=verified, err=io.StringIO())
    assert code == 0, verified.getvalue()
    assert {w: await asyncio.to_thread(hits, moved, w) for w in words} == before

    hub = server(1000)
    daemon = await start(moved, hub)
    try:
        await eventually(lambda: texts(hub, "#y") == ["<alice@a> pending bilby"], 20)
        hub.post("#x", "alice", "after the move")
        await eventually(lambda: texts(hub, "#y")[-1:] == ["<alice@a> after the move"], 20)
        assert texts(hub, "#y") == ["<alice@a> pending bilby", "<alice@a> after the move"]
    finally:
        await daemon.stop(drain=0)
    verified = io.StringIO()
    code = await asyncio.to_thread(archive_verify, moved, out=verified, err=io.StringIO())
    assert code == 0, verified.getvalue()


def migrate_command(config: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imbridge.cli", "db", "migrate", "-c", str(config),
            "--to", url, *extra]  # fmt: skip


async def interrupt(config: Path, url: str, blocked: int) -> str:
    """Runs the copy in a child process, Ctrl-C's it while a batch waits on record
    `blocked` (whose key a transaction of ours holds), and returns what it said."""
    # The target's schema first, then a transaction of ours holding one record's key:
    # the copy's batch that reaches it waits there, its earlier batches committed.
    await migrated_schema(url)
    holder = psycopg.connect(url)
    holder.execute(
        "INSERT INTO archive_records (seq, ts_us, kind, body, hash) VALUES (%s, 0, 'x', '', '')",
        (blocked,),
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - a child we signal while it runs
        migrate_command(config, url, "--batch-size", "5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def progressed() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                if conn.execute("SELECT to_regclass('migration_progress')").fetchone() == (None,):
                    return 0  # not started yet
                row = conn.execute(
                    "SELECT copied FROM migration_progress WHERE name = %s", (dbcopy.RECORDS,)
                ).fetchone()
            return int(row[0]) if row else 0

        await eventually(lambda: progressed() >= blocked - 10, 30)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.rollback()
        holder.close()
    assert proc.returncode == 1
    return stderr


async def test_interrupted_copy_resumes_and_copies_every_row_once(
    tmp_path: Path, postgres_url: str
) -> None:
    config = write_config(tmp_path, key=False)
    await fill(config, messages=30)
    expected = source_rows(tmp_path)
    records = [r[0] for r in expected[dbcopy.RECORDS]]
    blocked = records[len(records) // 2]

    schema = await migrated_schema(postgres_url)
    stderr = await interrupt(config, postgres_url, blocked)
    assert "interrupted; run the same command again" in stderr
    part = target_rows(postgres_url)
    assert 0 < len(part[dbcopy.RECORDS]) < len(records)

    again = await asyncio.to_thread(
        subprocess.run,
        migrate_command(config, postgres_url, "--batch-size", "5"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "resuming:" in again.stdout
    assert target_rows(postgres_url) == expected
    assert indexes(postgres_url) == schema


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def one_line(err: io.StringIO) -> str:
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


async def test_bad_targets_and_a_missing_state_are_refused_in_one_line(
    tmp_path: Path, postgres_url: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    err = io.StringIO()
    assert db_migrate(write_config(empty, key=False), to=postgres_url, err=err) == 2
    assert "no SQLite state database at" in one_line(err)

    config = write_config(tmp_path, key=False)
    await fill(config)
    err = io.StringIO()
    assert db_migrate(config, to="mysql://x@127.0.0.1/db", err=err) == 2
    assert "must be a postgresql:// URL" in one_line(err)

    url_file = tmp_path / "url"
    url_file.write_text(postgres_url + "\n")
    url_file.chmod(0o644)
    err = io.StringIO()
    assert db_migrate(config, to_file=url_file, err=err) == 2
    assert one_line(err).startswith("imbridge db migrate: --to-file:")

    err = io.StringIO()
    nowhere = f"postgresql://imbridge:x@127.0.0.1:{free_port()}/nothing"
    assert db_migrate(config, to=nowhere, err=err) == 1
    assert "cannot connect to postgresql://imbridge@127.0.0.1" in one_line(err)
    assert ":x@" not in err.getvalue()  # the password stays out of the message

    url_file.chmod(0o600)
    out, terminal = io.StringIO(), Terminal()
    code = await asyncio.to_thread(db_migrate, config, to_file=url_file, out=out, err=terminal)
    assert code == 0
    assert "copying:" in terminal.getvalue()  # the bar, drawn only on a terminal
    assert f"database_url_file: {url_file}" in out.getvalue()
    err = io.StringIO()
    assert db_migrate(config, to=postgres_url, err=err) == 2
    assert "already holds relay state" in one_line(err)
    assert os.stat(config.parent / "state" / DB_NAME).st_size > 0


async def test_a_source_changed_since_the_interruption_is_not_mixed_in(
    tmp_path: Path, postgres_url: str
) -> None:
    config = write_config(tmp_path, key=False)
    await fill(config, messages=20)
    await interrupt(config, postgres_url, blocked=30)
    await fill(config, first_id=1000)  # the daemon ran on SQLite again in between
    err = io.StringIO()
    assert await asyncio.to_thread(db_migrate, config, to=postgres_url, err=err) == 2
    assert "unfinished copy of" in one_line(err)
    assert "does not match this source now" in err.getvalue()


async def test_a_running_daemon_or_a_locked_source_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    config = write_config(tmp_path, key=False, listen=f"127.0.0.1:{free_port()}")
    daemon = await start(config, MemoryHub())
    try:
        err = io.StringIO()
        assert await asyncio.to_thread(db_migrate, config, to=postgres_url, err=err) == 1
        assert "the daemon is running" in one_line(err)
    finally:
        await daemon.stop(drain=0)
    writer = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        err = io.StringIO()
        assert await asyncio.to_thread(db_migrate, config, to=postgres_url, err=err) == 1
        assert "is locked by another process" in one_line(err)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with psycopg.connect(postgres_url) as conn:  # refused before the target was touched
        assert conn.execute("SELECT to_regclass('outbox')").fetchone() == (None,)
