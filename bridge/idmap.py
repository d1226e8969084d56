"""Which remote message on each network stands for which event, both ways.

An incoming message is mapped when it is accepted; each relayed copy when its network
accepted it. Edits, deletes and replies then find their target on every network, and a
message seen twice (an echo, a replay after restart) is recognised by its remote id.
The `*_sync` functions run inside a caller's transaction (see `Database.transact`).
"""

from __future__ import annotations

import dataclasses
import time

from imbridge.db import Conn, Database
from imbridge.events import Edit, Event, EventId, Message, RemoteId


def record_sync(
    conn: Conn,
    *,
    network: str,
    room: str,
    remote_id: str,
    event_id: str,
    inbound: bool,
) -> bool:
    """Maps a remote id; False if that remote id was already mapped (a duplicate)."""
    cur = conn.execute(
        "INSERT INTO idmap (network, remote_id, event_id, room, inbound, created)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (network, remote_id, event_id, room, int(inbound), time.time()),
    )
    return cur.rowcount == 1


def record_many_sync(conn: Conn, rows: list[tuple[str, str, str, str, bool]]) -> None:
    """Maps (network, room, remote_id, event_id, inbound) rows; already mapped ones stay."""
    now = time.time()
    conn.executemany(
        "INSERT INTO idmap (network, room, remote_id, event_id, inbound, created)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [(n, r, rid, eid, int(inbound), now) for n, r, rid, eid, inbound in rows],
    )


def in_room_sync(conn: Conn, event_id: str, network: str, room: str) -> bool:
    """Whether the event is in that room of that network: it came from there, or a copy
    of it was posted there."""
    row = conn.execute(
        "SELECT 1 FROM idmap WHERE event_id = ? AND network = ? AND room = ? LIMIT 1",
        (event_id, network, room),
    ).fetchone()
    return row is not None


def confines(event: Event) -> bool:
    """Whether `confined_sync` has a target to look up: a plain message needs no read,
    and a read of its own would take the event out of the group commit it would share
    with its neighbours (a read runs alone in the write queue)."""
    return isinstance(event, Edit) or (isinstance(event, Message) and event.reply_to is not None)


def confined_sync(conn: Conn, event: Event) -> Event:
    """`event` with its reply and edit targets kept only if they are in its own room.

    Adapters resolve a target by its remote id alone, and a person in two rooms can
    reply in room C to a message of room A: the quote would carry A's text, under its
    author's name, into C's gateway, across any barrier between them. So a reply to a
    message elsewhere relays as a plain message, and an edit of one as a new message."""
    network, room = event.origin.network, event.origin.room
    match event:
        case Message(reply_to=target) if target and not in_room_sync(conn, target, network, room):
            return dataclasses.replace(event, reply_to=None)
        case Edit(target=target) if not in_room_sync(conn, target, network, room):
            return Message(id=event.id, origin=event.origin, text=event.text, rich=event.rich)
        case _:
            return event


class IdMap:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def event_for(self, network: str, remote_id: str) -> EventId | None:
        def q(conn: Conn) -> EventId | None:
            row = conn.execute(
                "SELECT event_id FROM idmap WHERE network = ? AND remote_id = ?",
                (network, remote_id),
            ).fetchone()
            return EventId(row[0]) if row else None

        return await self.db.read(q)

    async def remote_for(self, event_id: str, network: str, room: str) -> RemoteId | None:
        """The id the event has on `network` in `room`: the original if it came from there,
        else the relayed copy (the first one, if it was split into several)."""

        def q(conn: Conn) -> RemoteId | None:
            row = conn.execute(
                "SELECT remote_id FROM idmap WHERE event_id = ? AND network = ? AND room = ?"
                " ORDER BY created LIMIT 1",
                (event_id, network, room),
            ).fetchone()
            return RemoteId(row[0]) if row else None

        return await self.db.read(q)
