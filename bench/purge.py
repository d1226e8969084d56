"""What a purge that leaves no word behind costs, on a large archive.

    .venv/bin/python bench/purge.py [--records 1000000] [--purged 30000]

An archive of `--records` records is generated as bench/archive.py does (chained,
indexed, in batches of 30 000 records that each get their own time), with one quoting
copy per event in `messages`; then the oldest `--purged` records are purged by the
retention code. Three runs on copies of the same file:

* baseline: the purge with neither `secure_delete` nor the full-text `optimize`;
* secure_delete: deleted rows zeroed (what the state database now always runs with);
* shipped: secure_delete and the FTS5 `optimize`, then `wal_checkpoint(TRUNCATE)`.

Each prints the time of the purge transaction (the database's write lock is held that
long: relaying waits) and of the WAL truncation after it.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.archive import generate
from imbridge.archive.retention import DAY_US, purge, truncate_wal
from imbridge.archive.store import ArchiveStore
from imbridge.db import CORE_MIGRATIONS
from imbridge.testing import sqlite_schema

OPTIMIZE = "INSERT INTO archive_fts (archive_fts) VALUES ('optimize')"


class WithoutOptimize:
    """The connection as the purge sees it, minus the FTS5 optimize: the baseline."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == OPTIMIZE:
            return self._conn.execute("SELECT 1")
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        return self._conn.executemany(sql, rows)


def prepare(path: Path, records: int) -> ArchiveStore:
    store = generate(path, records)
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_schema(conn, CORE_MIGRATIONS)
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO messages SELECT event_id, body, ts_us / 1e6 FROM archive_records"
        " WHERE kind = 'event'"
    )
    conn.execute("COMMIT")
    conn.close()
    return store


def run(src: Path, store: ArchiveStore, purged: int, *, secure: bool, optimize: bool) -> str:
    path = src.with_name(f"run-{secure}-{optimize}.db")
    shutil.copy(src, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA secure_delete={'ON' if secure else 'OFF'}")
    (cut,) = conn.execute(
        "SELECT ts_us FROM archive_records WHERE seq = ?", (purged + 1,)
    ).fetchone()
    now = int(cut) + store.settings.retention_days * DAY_US
    began = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    target: Any = conn if optimize else WithoutOptimize(conn)
    result = purge(store, target, now_us=now)
    conn.execute("COMMIT")
    took = time.perf_counter() - began
    began = time.perf_counter()
    truncate_wal(conn)
    wal = time.perf_counter() - began
    conn.close()
    path.unlink()
    return f"{result.deleted:>9} records purged in {took:6.2f} s, WAL truncated in {wal:5.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--purged", type=int, default=30_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "archive.db"
        began = time.perf_counter()
        store = prepare(src, args.records)
        print(f"generated {args.records} records in {time.perf_counter() - began:.0f} s")
        for name, secure, optimize in (
            ("baseline", False, False),
            ("secure_delete", True, False),
            ("shipped", True, True),
        ):
            print(f"{name:<14}{run(src, store, args.purged, secure=secure, optimize=optimize)}")


if __name__ == "__main__":
    main()
