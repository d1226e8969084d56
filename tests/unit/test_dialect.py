"""The engine seam's per-transaction hooks on SQLite."""

from __future__ import annotations

import sqlite3

from imbridge.dialect import serialize


class Watched(sqlite3.Connection):
    """A SQLite connection that notes each copy of its database into memory."""

    copies = 0

    def serialize(self, *, name: str = "main") -> bytes:
        self.copies += 1
        return super().serialize(name=name)


def test_serializing_writers_never_copies_a_sqlite_database() -> None:
    # `sqlite3.Connection.serialize` copies the whole database: called per transaction,
    # it made every commit cost the size of the state.
    conn = sqlite3.connect(":memory:", factory=Watched)
    try:
        conn.execute("CREATE TABLE t (x)")
        serialize(conn)
        assert conn.copies == 0
    finally:
        conn.close()
