"""What each reaction was, so that taking it back can be archived as such.

Matrix removes a reaction by redacting the reaction's own event: the adapter can only
say "event X was deleted" (X found through the id map). The relay records every
reaction's target and key here, and turns a delete of a known reaction into a
`Reaction(removed=True)` carrying the same target and key, which is what a reader of the
archive needs ("alice took back 👍 on message M"), whatever the network. The key is
sealed like the relay's other copies (a reaction may be a word, not an emoji), and
retention deletes the rows with the archive's records. SQL on a caller's connection; no
I/O of its own.
"""

from __future__ import annotations

import time

from imbridge.archive.sealing import Sealer
from imbridge.db import Conn
from imbridge.events import Delete, Event, EventId, Reaction

TABLE = "reactions"


def record_sync(conn: Conn, event: Reaction, sealer: Sealer) -> None:
    if not event.removed:
        conn.execute(
            "INSERT INTO reactions (event_id, target, key, created) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                event.id,
                event.target,
                sealer.seal(event.key, table=TABLE, key=event.id),
                time.time(),
            ),
        )


def as_removal(conn: Conn, event: Event, sealer: Sealer) -> Event:
    """`event`, or the removal it stands for when it deletes a known reaction."""
    if not isinstance(event, Delete):
        return event
    row = conn.execute(
        "SELECT target, key FROM reactions WHERE event_id = ?", (event.target,)
    ).fetchone()
    if row is None:
        return event
    key = sealer.open(str(row[1]), table=TABLE, key=event.target)
    return Reaction(id=event.id, origin=event.origin, target=EventId(row[0]), key=key, removed=True)


__all__ = ["as_removal", "record_sync"]
