"""How long `imbridge db migrate` takes, for sizing a move to PostgreSQL.

    .venv/bin/python -m bench.migrate [--records 200000] [--rows 50000]

A SQLite state of `--records` archive records (an event indexed and two decisions per
message, signed heads along the way, as bench/archive.py makes them) and `--rows` rows
each of id map, quoting copies and outbox is copied into a fresh PostgreSQL database on
a server of its own, then verified there, as the command does it. Printed: the copy's
rows/s and the whole run's time. Baseline, in the same run: the source only read, table
by table in key order (what any copy must at least do).
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.archive import generate
from imbridge import dbcopy
from imbridge.archive.store import ARCHIVE_MIGRATIONS
from imbridge.commands.dbmigrate import db_migrate
from imbridge.db import DB_NAME
from imbridge.engines.sqlite import SqliteEngine
from tests.servers.postgres import postgres_database


def relay_state(path: Path, rows: int) -> None:
    """The relay's own tables, beside the archive: what a busy bridge keeps."""
    bare = sqlite3.connect(path, isolation_level=None)  # `generate` made the archive's
    bare.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER)")
    bare.execute("INSERT INTO schema_version VALUES ('archive', ?)", (len(ARCHIVE_MIGRATIONS),))
    bare.close()
    engine = SqliteEngine(path)
    engine.open(dbcopy.migrations())
    conn = engine.connection()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO idmap VALUES (?, ?, ?, ?, 1, 0)",
        ((f"net{i % 3}", f"r{i}", f"{i:032x}", "#room") for i in range(rows)),
    )
    conn.executemany(
        "INSERT INTO messages VALUES (?, ?, 0)", ((f"{i:032x}", "x" * 200) for i in range(rows))
    )
    conn.executemany(
        "INSERT INTO outbox (network, room, event_id, txn_id, payload, created)"
        " VALUES ('b', '#y', ?, ?, ?, 0)",
        ((f"{i:032x}", f"t{i}", "y" * 300) for i in range(rows)),
    )
    conn.execute("COMMIT")
    engine.close()


def read_all(path: Path) -> tuple[int, float]:
    conn = sqlite3.connect(path)
    start = time.perf_counter()
    total = 0
    for table in dbcopy.TABLES:
        cur = conn.execute(f"SELECT * FROM {table.name} ORDER BY {', '.join(table.key)}")  # noqa: S608 - fixed names
        while batch := cur.fetchmany(dbcopy.BATCH):
            total += len(batch)
    took = time.perf_counter() - start
    conn.close()
    return total, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        generate(state / DB_NAME, args.records)
        relay_state(state / DB_NAME, args.rows)
        config = Path(tmp) / "bridge.yaml"
        config.write_text(
            f"bridge: {{state_dir: '{state}'}}\n"
            "networks: {a: {type: memory}, b: {type: memory}}\n"
            "gateways: {g: {rooms: [{network: a, room: '#x'}, {network: b, room: '#y'}]}}\n"
            "archive: {log_checkpoints: false}\n"
        )
        rows, base = read_all(state / DB_NAME)
        with postgres_database() as url:
            out = io.StringIO()
            start = time.perf_counter()
            code = db_migrate(config, to=url, out=out)
            took = time.perf_counter() - start
        size = (state / DB_NAME).stat().st_size / 1e6
        print(
            next(
                (line for line in out.getvalue().splitlines() if "archive intact" in line),
                "NOT INTACT",
            )
        )
        print(
            f"migrate: {rows:,} rows ({size:,.0f} MB SQLite) copied and verified in "
            f"{took:.1f} s ({rows / took:,.0f} rows/s), exit {code}; baseline reading "
            f"them from SQLite {base:.1f} s, ratio {took / base:.1f}x"
        )


if __name__ == "__main__":
    main()
