"""Schema migrations, numbered per component ("core", "archive", ...) in the
`schema_version` table, so each part of the state evolves its tables on its own, and both
engines run the same numbered steps (`imbridge.dialect.script_for`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from imbridge.dialect import Step, script_for
from imbridge.errors import StateError

if TYPE_CHECKING:
    from imbridge.db import Conn


def apply_migrations(
    conn: Conn,
    migrations: Mapping[str, Sequence[Step]],
    *,
    dialect: str,
    label: str,
    begin: str,
    lock: str = "",
) -> None:
    """Brings every component to its newest step, one committed transaction per step.
    `lock`: a statement run first in each transaction that makes other processes wait
    (PostgreSQL's advisory lock: instances started together migrate one at a time)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    for component, steps in migrations.items():
        while True:
            conn.execute(begin)
            try:
                if lock:
                    conn.execute(lock)
                row = conn.execute(
                    "SELECT version FROM schema_version WHERE component = ?", (component,)
                ).fetchone()
                current = int(row[0]) if row else 0
                if current > len(steps):
                    raise StateError(
                        f"state database {label} has {component} schema v{current}, newer "
                        f"than this imbridge knows (v{len(steps)}); upgrade imbridge"
                    )
                if current == len(steps):
                    conn.execute("COMMIT")
                    break
                for statement in statements(script_for(steps[current], dialect)):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?) ON CONFLICT (component)"
                    " DO UPDATE SET version = excluded.version",
                    (component, current + 1),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
