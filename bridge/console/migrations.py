"""The console's tables in the state database, as the `console` schema component.

Legal holds placed in the console live here rather than in the config file, because the
console may run as another process (or user) than the daemon and must not rewrite its
config: the purge reads this table whenever it runs (`retention.placed_holds`), so a hold
is in force the moment its row commits, and each change is also a chained `hold` record.
Failed logins are counted here so every console process shares one lockout.
"""

from __future__ import annotations

CONSOLE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE console_holds (
        name      TEXT PRIMARY KEY,
        network   TEXT NOT NULL,
        room      TEXT NOT NULL,
        "user"    TEXT NOT NULL,
        reason    TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        placed_us INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE console_logins (
        username        TEXT PRIMARY KEY,
        failures        INTEGER NOT NULL,
        locked_until_us INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
)
