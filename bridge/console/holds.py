"""Legal holds placed and lifted in the console.

A hold placed here is a row of `console_holds` (read by every purge when it runs, so it
protects its records from that moment, in the daemon as in `imbridge archive purge`) and
a chained `hold` record marked `source: console`, with its reason and who placed it, in
the same transaction. Holds from the config file are shown beside them but changed only
in the file (a reload records them): the console never rewrites the operator's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from imbridge.archive.actor import Actor
from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import LegalHold
from imbridge.db import Conn


class HoldError(ValueError):
    """A refused hold change, said to the user as is."""


@dataclass(frozen=True, slots=True)
class Hold:
    name: str
    network: str
    room: str
    user: str
    source: str
    """`console` or `config`."""
    reason: str = ""
    placed_by: str = ""
    placed: datetime | None = None


def listed(conn: Conn, configured: tuple[LegalHold, ...]) -> list[Hold]:
    out = [Hold(h.name, h.network, h.room, h.user, "config") for h in configured]
    for name, net, room, user, reason, by, at in conn.execute(
        'SELECT name, network, room, "user", reason, placed_by, placed_us FROM console_holds '
        "ORDER BY placed_us"
    ):
        when = datetime.fromtimestamp(at / 1_000_000, UTC)
        out.append(Hold(name, net, room, user, "console", reason, by, when))
    return out


def place(
    conn: Conn,
    store: ArchiveStore,
    actor: Actor,
    hold: LegalHold,
    reason: str,
) -> int:
    """Places the hold and records it; returns the `hold` record's sequence number."""
    if any(h.name == hold.name for h in store.settings.legal_hold):
        raise HoldError(f"a hold named {hold.name!r} is in the config file already")
    if conn.execute("SELECT 1 FROM console_holds WHERE name = ?", (hold.name,)).fetchone():
        raise HoldError(f"a hold named {hold.name!r} is in force already")
    if not reason.strip():
        raise HoldError("give the reason for the hold (a case or matter reference)")
    globs = {"network": hold.network, "room": hold.room, "user": hold.user}
    conn.execute(
        "INSERT INTO console_holds VALUES (?, ?, ?, ?, ?, ?, ?)",
        (hold.name, hold.network, hold.room, hold.user, reason, actor.principal, store.clock()),
    )
    head = store.append(conn, [_record("placed", hold.name, globs, actor, reason)])
    return head.seq


def lift(conn: Conn, store: ArchiveStore, actor: Actor, name: str, reason: str) -> int:
    row = conn.execute(
        'SELECT network, room, "user" FROM console_holds WHERE name = ?', (name,)
    ).fetchone()
    if row is None:
        raise HoldError(f"no hold named {name!r} was placed in the console")
    if not reason.strip():
        raise HoldError("give the reason for lifting the hold")
    conn.execute("DELETE FROM console_holds WHERE name = ?", (name,))
    globs = {"network": row[0], "room": row[1], "user": row[2]}
    return store.append(conn, [_record("lifted", name, globs, actor, reason)]).seq


def _record(
    change: str, name: str, globs: dict[str, str], actor: Actor, reason: str
) -> dict[str, object]:
    return {
        "kind": "hold",
        "action": change,
        "sender": actor.principal,
        "body": {
            "name": name,
            "globs": globs,
            "by": actor.as_json(),
            "source": "console",
            "reason": reason,
        },
    }
