"""Which remote message on each network stands for which event, both ways.

An incoming message is mapped when it is accepted; each relayed copy when its network
accepted it. Edits, deletes and replies then find their target on every network, and a
message seen twice (an echo, a replay after restart) is recognised by its remote id.
The `*_sync` functions run inside a caller's transaction (see `Database.transact`).
"""

from __future__ import annotations

import sqlite3
import time

from imbridge.db import Database
from imbridge.events import EventId, RemoteId


def record_sync(
    conn: sqlite3.Connection,
    *,
    network: str,
    room: str,
    remote_id: str,
    event_id: str,
    inbound: bool,
) -> bool:
    """Maps a remote id; False if that remote id was already mapped (a duplicate)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO idmap (network, remote_id, event_id, room, inbound, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (network, remote_id, event_id, room, int(inbound), time.time()),
    )
    return cur.rowcount == 1


def record_many_sync(conn: sqlite3.Connection, rows: list[tuple[str, str, str, str, bool]]) -> None:
    """Maps (network, room, remote_id, event_id, inbound) rows; already mapped ones stay."""
    now = time.time()
    conn.executemany(
        "INSERT OR IGNORE INTO idmap (network, room, remote_id, event_id, inbound, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(n, r, rid, eid, int(inbound), now) for n, r, rid, eid, inbound in rows],
    )


class IdMap:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def event_for(self, network: str, remote_id: str) -> EventId | None:
        def q(conn: sqlite3.Connection) -> EventId | None:
            row = conn.execute(
                "SELECT event_id FROM idmap WHERE network = ? AND remote_id = ?",
                (network, remote_id),
            ).fetchone()
            return EventId(row[0]) if row else None

        return await self.db.read(q)

    async def remote_for(self, event_id: str, network: str, room: str) -> RemoteId | None:
        """The id the event has on `network` in `room`: the original if it came from there,
        else the relayed copy (the first one, if it was split into several)."""

        def q(conn: sqlite3.Connection) -> RemoteId | None:
            row = conn.execute(
                "SELECT remote_id FROM idmap WHERE event_id = ? AND network = ? AND room = ?"
                " ORDER BY created LIMIT 1",
                (event_id, network, room),
            ).fetchone()
            return RemoteId(row[0]) if row else None

        return await self.db.read(q)
