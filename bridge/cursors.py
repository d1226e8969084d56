"""Each network's resume points (Matrix `next_batch`, XMPP last stanza-id) and small state
an adapter must keep across restarts (XMPP's current reaction sets), stored in the state
database so a restart continues where the previous run stopped.

Values are sealed with the archive key when one is set, like the relay's other copies:
an adapter's state may hold what people wrote (a reaction may be a word), and the
archive promises no words in clear at rest."""

from __future__ import annotations

from collections.abc import Callable

from imbridge.archive.sealing import Sealer
from imbridge.db import Conn, Database
from imbridge.events import EventId, RemoteId
from imbridge.idmap import IdMap


class NetworkCursors:
    """The `Cursors` slot of one network (see `imbridge.adapter.Cursors`)."""

    def __init__(
        self,
        db: Database,
        network: str,
        sealer: Sealer | None = None,
        *,
        waiting: Callable[[str, RemoteId], EventId | None] | None = None,
    ) -> None:
        self.db = db
        self.network = network
        self._ids = IdMap(db)
        self._sealer = sealer or Sealer()
        self._waiting = waiting
        """Events handed to the relay and not yet committed (they wait on policy hooks):
        an edit or reply arriving meanwhile must still find its target."""

    async def get(self, key: str) -> str | None:
        def q(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT value FROM cursors WHERE network = ? AND key = ?", (self.network, key)
            ).fetchone()
            return str(row[0]) if row else None

        stored = await self.db.read(q)
        if stored is None:
            return None
        return self._sealer.open(stored, table="cursors", key=f"{self.network}\0{key}")

    async def set(self, key: str, value: str) -> None:
        value = self._sealer.seal(value, table="cursors", key=f"{self.network}\0{key}")

        def w(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO cursors (network, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (network, key) DO UPDATE SET value = excluded.value",
                (self.network, key, value),
            )

        await self.db.transact(w)

    async def event_id(self, remote_id: RemoteId) -> EventId | None:
        if self._waiting is not None:
            found = self._waiting(self.network, remote_id)
            if found is not None:
                return found
        return await self._ids.event_for(self.network, remote_id)
