"""The archive's full-text index on each engine, one query syntax for both.

SQLite: an FTS5 table (`unicode61`, diacritics removed), filled from
`archive_fts_pending` in batches. PostgreSQL: a `tsvector` column with a GIN index, filled
the same way; its lexemes are cut by `crypto.words`, the same folding FTS5 applies (case,
accents, any non-alphanumeric a separator), not by PostgreSQL's own parser (which keeps
an e-mail address or a hyphenated word whole): a word is found on both engines alike.

A query is a list of terms that must all occur, each a set of alternatives (with an
archive key, a word's token under each key of the keyring); `match` renders it for the
engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from imbridge.archive.crypto import words
from imbridge.dialect import SQLITE

if TYPE_CHECKING:
    from imbridge.db import Conn

SQLITE_TABLE = """
    CREATE VIRTUAL TABLE archive_fts USING fts5 (
        terms, tokenize='unicode61 remove_diacritics 2'
    );
"""
POSTGRESQL_TABLE = """
    CREATE TABLE archive_fts (
        seq   BIGINT PRIMARY KEY,
        terms TSVECTOR NOT NULL
    );
    CREATE INDEX archive_fts_terms ON archive_fts USING GIN (terms);
"""

Terms = Sequence[Sequence[str]]
"""All of these, each any of its alternatives."""


def index_pending(conn: Conn, dialect: str) -> int:
    """Moves the waiting terms into the index in one go; returns how many."""
    if dialect == SQLITE:
        moved = int(
            conn.execute(
                "INSERT INTO archive_fts (rowid, terms) SELECT seq, terms FROM archive_fts_pending"
            ).rowcount
        )
    else:
        rows = conn.execute("SELECT seq, terms FROM archive_fts_pending").fetchall()
        conn.executemany(
            "INSERT INTO archive_fts (seq, terms) VALUES (?, array_to_tsvector(?::text[]))"
            " ON CONFLICT DO NOTHING",
            [(seq, sorted(set(words(terms)))) for seq, terms in rows],
        )
        moved = len(rows)
    if moved:
        conn.execute("DELETE FROM archive_fts_pending")
    return moved


def forget(conn: Conn, dialect: str, seqs: Sequence[int]) -> None:
    """Removes purged records from the index and from what waits for it."""
    key = "rowid" if dialect == SQLITE else "seq"
    conn.executemany(f"DELETE FROM archive_fts WHERE {key} = ?", ((s,) for s in seqs))  # noqa: S608 - fixed names
    conn.executemany("DELETE FROM archive_fts_pending WHERE seq = ?", ((s,) for s in seqs))
    if dialect == SQLITE:
        # Merges every index segment into one, dropping the deleted documents' entries.
        conn.execute("INSERT INTO archive_fts (archive_fts) VALUES ('optimize')")


def match(dialect: str, terms: Terms) -> tuple[str, str, str]:
    """The join key, the condition (one parameter) and its parameter for a query."""
    if dialect == SQLITE:
        return "f.rowid", "archive_fts MATCH ?", " AND ".join(_fts5(t) for t in terms)
    return "f.seq", "f.terms @@ ?::tsquery", " & ".join(_tsquery(t) for t in terms)


def _fts5(alternatives: Sequence[str]) -> str:
    quoted = ['"' + a.replace('"', '""') + '"' for a in alternatives]
    return quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")"


def _tsquery(alternatives: Sequence[str]) -> str:
    quoted = ["'" + a.replace("\\", "\\\\").replace("'", "''") + "'" for a in alternatives]
    return quoted[0] if len(quoted) == 1 else "(" + " | ".join(quoted) + ")"
