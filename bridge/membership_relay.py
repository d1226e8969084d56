"""Turns the membership debounce's closed windows into queued notices: the I/O side of
`membership`, one task owned by the daemon.

The relay hands it each membership event it committed, with the destinations policy let
it reach in gateways with `relay_membership`. When a window closes, its line is queued in
that room's outbox and recorded in the archive as a notice (`purpose: membership`), in
one transaction, like the bridge's other notices. `flush` at stop queues the lines of the
windows still open, so a clean stop loses none.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from imbridge.db import Conn
from imbridge.events import Event, Message, MessageKind, Origin, Sender, new_event_id
from imbridge.membership import Debouncer, Window
from imbridge.outbox import Item, enqueue_sync, txn_id_for
from imbridge.policy import Destination

if TYPE_CHECKING:
    from imbridge.archive import Recorder
    from imbridge.db import Database
    from imbridge.outbox import Outbox

PURPOSE = "membership"


class MembershipRelay:
    def __init__(self, db: Database, outbox: Outbox, recorder: Recorder, *, sender: Sender) -> None:
        self._db = db
        self._outbox = outbox
        self._recorder = recorder
        self._sender = sender
        self._debouncer = Debouncer()
        self._changed = asyncio.Event()
        self.queued = 0
        """Notice lines queued so far (tests and metrics)."""

    @property
    def open_windows(self) -> int:
        """Windows collecting now: lines still to come."""
        return len(self._debouncer)

    def collect(self, event: Event, dest: Destination, *, window: float) -> None:
        """Counts a committed membership event toward `dest` (called by the relay)."""
        self._debouncer.add(event, dest, asyncio.get_running_loop().time(), window=window)
        self._changed.set()

    async def run(self) -> None:
        """Queues each window's line when it closes; runs until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()  # before looking: a change from now on wakes the wait
            closes = self._debouncer.next_close()
            if closes is None:
                await self._changed.wait()
                continue
            delay = closes - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._changed.wait()  # an earlier window may have opened
                    continue
                except TimeoutError:
                    pass
            await self._queue(self._debouncer.due(loop.time()))

    async def flush(self) -> None:
        """Queues every open window's line now (the daemon stops)."""
        await self._queue(self._debouncer.flush())

    async def _queue(self, lines: list[tuple[Window, str]]) -> None:
        if not lines:
            return
        notes = [
            Message(
                id=new_event_id(),
                origin=Origin(network=w.dest.network, room=w.dest.room, sender=self._sender),
                text=text,
                kind=MessageKind.NOTICE,
            )
            for w, text in lines
        ]
        items = [
            Item(
                network=n.origin.network,
                room=n.origin.room,
                event=n,
                txn_id=txn_id_for(n.id, n.origin.network, n.origin.room, PURPOSE),
            )
            for n in notes
        ]
        recorder, sealer = self._recorder, self._outbox.sealer

        def commit(conn: Conn) -> None:
            enqueue_sync(conn, items, sealer=sealer)
            for note in notes:
                recorder.record_notice(conn, note, purpose=PURPOSE)

        await self._db.transact(commit)
        self.queued += len(items)
        self._outbox.wake(items)


__all__ = ["PURPOSE", "MembershipRelay"]
