"""SQLite: one file in `bridge.state_dir`, the default engine.

Why the small transactions run on the event loop rather than in a database thread: a
relay commit is a few indexed rows, about 0.1 ms of SQLite work, while handing it to a
thread and back costs as much again in wake-ups on each side, and the GIL lets only one
of the two threads run Python anyway. WAL checkpoints, the one part of a commit that
writes the database file and syncs it, run in the thread on a connection of their own,
so a commit on the loop only appends to the WAL.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from imbridge import statefiles
from imbridge.dialect import SQLITE, Step
from imbridge.errors import StateError
from imbridge.migrate import apply_migrations

CHECKPOINT_EVERY = 256
"""Write jobs between background WAL checkpoints."""
WAL_BACKSTOP_PAGES = 4096
"""SQLite's own checkpoint, on the loop, only if the background ones fall this far behind."""


class SqliteEngine:
    dialect = SQLITE
    on_loop = True
    begin = "BEGIN IMMEDIATE"
    max_batch = 128  # the batch runs on the event loop: it must stay short

    def __init__(self, path: Path | str) -> None:
        self.path: Path | str = Path(path) if str(path) != ":memory:" else ":memory:"
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._unchecked = 0

    def open(self, migrations: Mapping[str, Sequence[Step]]) -> None:
        if isinstance(self.path, Path):
            # Created 0600 before SQLite sees it: SQLite gives -wal and -shm the
            # database's mode, so those are private from their first byte too.
            os.close(statefiles.open_private(self.path, os.O_RDWR)[0])
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            # Takes effect on a new file only. Each commit appends every page it dirtied to
            # the WAL; the relay path dirties a few pages in many tables per event, so
            # half-size pages make its commits ~20% cheaper (measured in bench/core.py).
            conn.execute("PRAGMA page_size=2048")
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only a power
            # loss can lose the last commits, which the outbox then resends.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            # Deleted rows are overwritten with zeros, in their pages and on the free
            # list: a purged message must leave no word in the file (docs/archive.md).
            conn.execute("PRAGMA secure_delete=ON")
            apply_migrations(
                conn, migrations, dialect=SQLITE, label=str(self.path), begin=self.begin
            )
            if isinstance(self.path, Path):  # files made by an older version, or by hand
                wal, shm = (self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))
                statefiles.restrict(self.path, wal, shm)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc
        self._conn = conn

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError("state database is not open")
        return self._conn

    def pipelined(self) -> AbstractContextManager[None]:
        return nullcontext()  # a statement on a file has no round trip to save

    def settle(self) -> None:
        pass

    def recover(self) -> None:
        pass

    def after_writes(self, jobs: int) -> Callable[[], None] | None:
        """A background checkpoint every `CHECKPOINT_EVERY` write jobs, so that the
        loop's commits never copy the WAL into the database file themselves."""
        self._unchecked += jobs
        if self._unchecked < CHECKPOINT_EVERY or not isinstance(self.path, Path):
            return None
        self._unchecked = 0
        return self._checkpoint

    def _checkpoint(self) -> None:
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False
                )
                self._checkpointer.execute("PRAGMA busy_timeout=5000")
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # the backstop checkpoint on the loop catches up later
            pass

    def close(self) -> None:
        for conn in (self._checkpointer, self._conn):
            if conn is not None:
                conn.close()
        self._checkpointer = self._conn = None
