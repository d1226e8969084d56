"""What the relay does with a delivery to a room whose backlog is full.

Inside the relay's commit, before its deliveries are queued, each one is checked against
its destination's backlog (`backlog.Backlog.admits`). One that may not wait there is shed:
never queued, but on the record in the same transaction as a `delivery` that `failed`
with the error `backlog full`, and counted (`imbridge_messages_shed`). Nothing is
dropped silently: the room is told that some of that sender's messages were not relayed
there, and the sender is told in the room they wrote in, each at most once per sender
and room every `notice_every` seconds; both notices are archived as `notice` records
(purpose `backlog`).

Only the relayed event's own copies are ever shed: the bridge's notices and private
replies always pass, and so do deletes (they only take something away). A destination
that is disconnected sheds nothing: an outage loses nothing, everything waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import structlog

from imbridge.adapter import Adapter, NetworkConfig
from imbridge.archive import Recorder
from imbridge.backlog import BacklogLimit
from imbridge.db import Conn
from imbridge.events import Delete, Event, Message, MessageKind, Origin, Sender, new_event_id
from imbridge.fairness import Source, cost_of, source_of
from imbridge.outbox import Item, Outbox, OutboxStats, txn_id_for

log = structlog.get_logger("imbridge.relay")

SHED_ERROR = "backlog full"
"""The error of a shed delivery's `delivery` record."""
NOTICE_PURPOSE = "backlog"
BACKLOG_SENDER = Sender(id="imbridge", name="imbridge")


class Shedding:
    """The relay's backlog check; remembers when it last told whom."""

    def __init__(
        self,
        outbox: Outbox,
        recorder: Recorder,
        adapters: Mapping[str, Adapter],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.recorder = recorder
        self.adapters = adapters
        self.clock = clock
        self._told: dict[tuple[str, str, Source], float] = {}
        """(network, room, sender) -> when a notice about them last went there."""

    def admit_sync(
        self,
        conn: Conn,
        event: Event,
        items: list[Item],
        networks: Mapping[str, NetworkConfig],
    ) -> list[Item]:
        """The items to queue: `items` less those shed, plus the notices due. Runs in
        the relay's transaction, so counts and records move together."""
        kept: list[Item] = []
        notices: list[Item] = []
        for item in items:
            source, size = source_of(item.event), cost_of(item.event)
            backlog = self.outbox.backlog(item.network, item.room)
            limit = _limit(networks, item.network)
            if (
                limit is None
                or not self._sheddable(event, item)
                or backlog.admits(source, size, limit)
            ):
                self.outbox.count(item)
                kept.append(item)
                continue
            self.recorder.record_delivery(
                conn, event.id, item.dest, remote_id=None, error=SHED_ERROR
            )
            self.outbox.stats.setdefault(item.network, OutboxStats()).shed += 1
            log.info(
                "backlog_shed",
                network=event.origin.network,
                room=event.origin.room,
                event_id=event.id,
                dest_network=item.network,
                dest_room=item.room,
                sender=source[1],
                waiting=backlog.items + backlog.earlier,
                theirs=backlog.held_by(source),
            )
            notices += self._notices(conn, event, item, source, limit.notice_every)
        for note in notices:
            self.outbox.count(note)
        return kept + notices

    def _sheddable(self, event: Event, item: Item) -> bool:
        if item.event.id != event.id or isinstance(item.event, Delete):
            return False  # a notice, a private reply, or a delete: always passes
        adapter = self.adapters.get(item.network)
        return adapter is not None and adapter.connected

    def _notices(
        self,
        conn: Conn,
        event: Event,
        item: Item,
        source: Source,
        every: float,
    ) -> list[Item]:
        """The room's and the sender's notice, each if not given too recently."""
        now = self.clock()
        self._forget(now, every)
        origin = event.origin
        name = item.event.origin.sender.name  # as policy let it cross to that room
        out: list[Item] = []
        due = [
            (
                item.network,
                item.room,
                f"imbridge: {name} ({origin.network}) is sending faster than this room can "
                "take; some of their messages were not relayed here.",
            ),
            (
                origin.network,
                origin.room,
                f"{origin.sender.name}: you are sending faster than {item.room} on "
                f"{item.network} can take; some of your messages were not relayed there.",
            ),
        ]
        for network, room, text in due:
            told = (network, room, source)
            if now - self._told.get(told, -every) < every:
                continue
            self._told[told] = now
            note = Message(
                id=new_event_id(),
                origin=Origin(network=network, room=room, sender=BACKLOG_SENDER),
                text=text,
                kind=MessageKind.NOTICE,
            )
            self.recorder.record_notice(
                conn, note, purpose=NOTICE_PURPOSE, about=event.id, rule="backlog"
            )
            out.append(
                Item(
                    network=network,
                    room=room,
                    event=note,
                    txn_id=txn_id_for(note.id, network, room, "backlog-notice"),
                )
            )
            log.warning(
                "backlog_full",
                dest_network=item.network,
                dest_room=item.room,
                sender=source[1],
                told=f"{network}/{room}",
            )
        return out

    def _forget(self, now: float, every: float) -> None:
        """Keeps the memory of notices small: one past its interval is as good as none."""
        if len(self._told) > 256:
            self._told = {k: t for k, t in self._told.items() if now - t < every}


def _limit(networks: Mapping[str, NetworkConfig], name: str) -> BacklogLimit | None:
    """The destination network's limit; None where `backlog: null` turned it off (or
    the network is no longer configured: its items wait, as they always did)."""
    net = networks.get(name)
    return net.backlog if net is not None else None


__all__ = ["NOTICE_PURPOSE", "SHED_ERROR", "Shedding"]
