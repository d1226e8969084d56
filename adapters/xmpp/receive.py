"""Receiving: stanzas from the rooms and their archives, to core events, in order.

Everything that arrives (live, from MUC, or from a MAM catch-up) goes through one queue
(the session's `inbox`) and one consumer task (`run`), so events reach the sink in the
order the rooms sent them, and a
room's cursor is stored only after the sink has taken the event it follows (the `then`
of `Intake.put` queues it for writing, in `writes`). The relay's own reflections produce
no event: they confirm a delivery (see `delivery`). While a room reads its archive, its
live messages wait in the room's buffer, so archive and live traffic pass once each, in
order. What a stanza means is `proto.translate`'s; this part looks up the ids it refers
to, keeps the state that outlives a stanza (aliases, reaction sets, cursors) and hands
the events over.
"""

from __future__ import annotations

import dataclasses
import functools
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from imbridge.adapter import Cursors, EventSink
from imbridge.events import Event, EventId, RemoteId, new_event_id, utcnow
from imbridge.intake import Intake

from .config import XmppConfig
from .delivery import Delivery
from .inbox import CatchUp, Inbox
from .proto.private import Private, private_message
from .proto.reactions import ReactionSets, reaction_keys, to_reactions
from .proto.reactions import state_key as reaction_state_key
from .proto.stanzas import (
    NS_MAM,
    WireMessage,
    WirePresence,
    parse_message,
    parse_presence,
    q,
    split_jid,
)
from .proto.translate import Inbound, Occupancy, origin_of, presence_to_core, references, to_core
from .rooms import Cursor, Room, cursor_key
from .session import Session
from .voices import Voices
from .writes import CoalescedWrites, RecentIds


def alias_key(conversation: str, message_id: str) -> str:
    """State key of a sender's own message id in a room or private chat; its value is the
    id the id map knows the message by."""
    return f"mid:{conversation}:{message_id}"


def sent_key(stanza_id: str) -> str:
    """State key of one of the relay's copies; its value is the origin-id it carried."""
    return f"oid:{stanza_id}"


V = TypeVar("V")
Save = Callable[[], None]
"""What to store once an event is on disk: it only queues writes (`writes`)."""


def _both(first: Save | None, second: Save) -> Save:
    """Two `then` callbacks as one, in order (both only queue writes: neither awaits)."""
    if first is None:
        return second

    def both() -> None:
        first()
        second()

    return both


def _bounded_put(mapping: OrderedDict[str, V], key: str, value: V, *, limit: int) -> None:
    mapping[key] = value
    mapping.move_to_end(key)
    while len(mapping) > limit:
        mapping.popitem(last=False)


def _fresh_ids() -> Iterator[EventId]:
    while True:
        yield new_event_id()


class Receiver:
    """The inbound consumer and what it does with each stanza."""

    def __init__(
        self,
        name: str,
        config: XmppConfig,
        cursors: Cursors,
        *,
        identity: str,
        rooms: dict[str, Room],
        inbox: Inbox,
        session: Session,
        delivery: Delivery,
        writes: CoalescedWrites,
        voices: Voices,
        log: Any,
    ) -> None:
        self.name = name
        self.config = config
        self.identity = identity
        self._cursors = cursors
        self._rooms = rooms
        self._inbox = inbox
        self._session = session
        self._delivery = delivery
        self._writes = writes
        self._voices = voices
        self._log = log
        self._own_jid = split_jid(identity)[0]  # private messages from it are ours
        self._intake: Intake | None = None
        self._sent_ids = RecentIds(writes)  # oid: our stanza-id -> origin-id
        self._aliases = RecentIds(writes)  # mid: room+their id -> stanza-id
        self._reaction_sets: OrderedDict[str, ReactionSets] = OrderedDict()
        """Reaction sets of recent conversations, as stored (`reactions`)."""

    def open(self, sink: EventSink) -> None:
        """Hands events to `sink` from now on (each run of the adapter has its own)."""
        self._intake = Intake(sink)

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            raise RuntimeError("receiving before the adapter started")
        return self._intake

    async def drain(self) -> None:
        """Waits until every event handed over is on disk."""
        await self.intake.drain()

    async def origin_id_of(self, stanza_id: str) -> str | None:
        """The origin-id one of the relay's copies carried, by the room's stanza-id for
        it, which a correction of that copy must name (XEP-0308)."""
        return await self._sent_ids.get(sent_key(stanza_id))

    async def run(self) -> None:
        """The consumer task: every item of the inbox, in order, until cancelled."""
        intake = self.intake
        try:
            while True:
                work = await self._inbox.get()
                try:
                    if isinstance(work, CatchUp):
                        await self._catch_up(work)
                    elif work[0] == "message":
                        await self.message(work[1])
                    else:
                        await self._presence(work[1])
                except Exception as exc:  # noqa: BLE001 - one bad stanza never stops the relay
                    self._log.exception("inbound_failed", error=str(exc))
        finally:
            await intake.aclose()

    async def _catch_up(self, work: CatchUp) -> None:
        room = work.room
        try:
            for wire in work.messages:
                await self._process(room, wire)
            buffered, room.buffer = room.buffer, []
            for wire in buffered:
                await self._process(room, wire)
            await self.intake.drain()  # on disk before sends resume (no resend of these)
        finally:
            room.set_catching_up(False)
            if not work.done.done():
                work.done.set_result(None)
        self._log.info("caught_up", room=room.jid, archived=len(work.messages))

    async def message(self, element: ET.Element) -> None:
        """One live message stanza (a catch-up's come with it, as `CatchUp`)."""
        if element.find(q(NS_MAM, "result")) is not None:
            return  # an archive result: handled by the catch-up that asked for it
        wire = parse_message(element)
        room = self._rooms.get(wire.room)
        if wire.type == "error":
            if room is not None:
                self._send_failed(room, wire)
        elif wire.type == "groupchat":
            if room is None:
                return
            if room.catching_up:
                room.buffer.append(wire)
            else:
                await self._process(room, wire)
        elif (private := self._private(wire, room)) is not None:
            await self._process_private(wire, private, room)

    def _private(self, wire: WireMessage, room: Room | None) -> Private | None:
        """Where a private message to the relay came from; None for any other stanza,
        and for all of them when the network does not take private messages."""
        if not self.config.direct_messages:
            return None
        if room is not None and self._voices.speaks_for(
            room, wire.nick, room.occupants.get(wire.nick)
        ):
            return None  # one of our own puppets
        rooms = {r.jid: r.nick for r in self._rooms.values() if r.joined}
        private = private_message(wire, own=self._own_jid, rooms=rooms)
        person = self._voices.addressee(wire.to) if private is not None else None
        return dataclasses.replace(private, person=person) if private and person else private

    async def _process_private(
        self, wire: WireMessage, private: Private, room: Room | None
    ) -> None:
        """A private message: archived (the core decides), no cursor (no catch-up reads
        a private chat back), its ids remembered so corrections and reactions resolve."""
        # A person by their bare JID; someone in a room by their real JID where the room
        # shows it, else by their occupant JID (the conversation).
        sender = room.sender_id(wire.nick) if room is not None else private.conversation
        events, then = await self._to_events(private.conversation, wire, sender, private)
        if private.remote_id:
            self._remember_alias(private.conversation, wire, private.remote_id)
        await self._put(events, then)

    def _send_failed(self, room: Room, wire: WireMessage) -> None:
        condition = wire.error or "undefined-condition"
        if self._delivery.refused(wire.id or "", room.jid, condition):
            room.joined = False
            self._session.rejoin(room)

    async def _process(self, room: Room, wire: WireMessage) -> None:
        sid = wire.stanza_id
        if sid is not None and sid in room.seen:
            return
        oid = wire.origin_id or wire.id
        is_subject = wire.subject is not None and wire.body is None
        if is_subject and not room.subject_seen and wire.stamp is None:
            room.subject_seen = True  # the room's current subject, sent on every join
            self._delivery.confirm_topics(room.jid, wire.stanza_id)
            return
        events: list[Event] = []
        then: Save | None = None
        own = wire.nick == room.nick or wire.relayed_by == self.identity
        if own or self._voices.speaks_for(room, wire.nick, room.occupants.get(wire.nick)):
            if is_subject:
                self._delivery.confirm_topics(room.jid, wire.stanza_id)
            elif oid:
                self._delivery.confirm(oid, RemoteId(sid or oid))
                if sid:
                    self._remember_sent(sid, oid)
        else:
            sender = room.sender_id(wire.nick) if wire.nick else room.jid
            events, then = await self._to_events(room.jid, wire, sender, None)
            if sid:
                self._remember_alias(room.jid, wire, sid)
        if sid is not None:
            room.seen.add(sid)
            cursor = Cursor(sid, wire.stamp or datetime.now(UTC))
            # The cursor moves once the events (if any) are on disk, never past them: only
            # then is it queued for writing, replacing a cursor of this room still queued.
            save = functools.partial(self._writes.put, cursor_key(room.jid), cursor.dumps())
            then = _both(then, save)
        await self._put(events, then)

    async def _put(self, events: list[Event], then: Save | None) -> None:
        """Hands `events` to the core in order; `then` runs once the last is on disk."""
        intake = self.intake
        for event in events[:-1]:
            await intake.put(event)
        if events:
            await intake.put(events[-1], then)
        elif then is not None:
            await intake.put(None, then)

    async def _to_events(
        self, conversation: str, wire: WireMessage, sender: str, private: Private | None
    ) -> tuple[list[Event], Save | None]:
        """The events `wire` stands for, and what to store once they are on disk."""
        resolved = await self._resolve(conversation, wire, prefixed=private is not None)
        ctx = Inbound(
            network=self.name,
            event_id=new_event_id(),
            sender_id=sender,
            resolved=resolved,
            now=utcnow(),
            private=private,
        )
        if wire.reactions is not None:
            return await self._reaction_events(conversation, wire, ctx)
        event = to_core(wire, ctx)
        return ([event] if event is not None else []), None

    async def _resolve(
        self, conversation: str, wire: WireMessage, *, prefixed: bool
    ) -> dict[str, EventId]:
        """Event ids of the messages `wire` refers to, through the id map: by the id
        itself or, for a sender's own message id, by the alias it was stored under. The
        relay's copies confirmed a moment ago may not be in the id map yet: those come
        from the delivery bookkeeping (`Delivery.event_of`). In a
        private chat ids carry the conversation (see `private`), so a reference there
        finds nothing said elsewhere."""
        resolved: dict[str, EventId] = {}
        for ref in references(wire):
            remote = RemoteId(f"{conversation}:{ref}" if prefixed else ref)
            event_id = self._delivery.event_of(remote) or await self._cursors.event_id(remote)
            if event_id is None:
                key = alias_key(conversation, ref)
                sid = await self._aliases.get(key)
                if sid:
                    event_id = await self._cursors.event_id(RemoteId(sid))
            if event_id is not None:
                resolved[ref] = event_id
        return resolved

    async def _reaction_events(
        self, conversation: str, wire: WireMessage, ctx: Inbound
    ) -> tuple[list[Event], Save | None]:
        """XEP-0444: what changed in the sender's set on one message, against the set
        kept for them (`reactions`); the new set is stored once the events are on disk."""
        target = ctx.resolved.get(wire.reaction_id or "")
        if target is None or wire.reactions is None:
            return [], None  # a message the bridge never saw: nothing to name
        sets = self._reaction_sets.get(conversation)
        if sets is None:
            sets = ReactionSets.loads(await self._writes.get(reaction_state_key(conversation)))
        _bounded_put(self._reaction_sets, conversation, sets, limit=256)
        current = reaction_keys(wire.reactions)
        previous = sets.get(ctx.sender_id, target)
        events: list[Event] = list(
            to_reactions(origin_of(wire, ctx), target, previous, current, ids=_fresh_ids())
        )
        if not events:
            return [], None
        sets.put(ctx.sender_id, target, current)
        save = functools.partial(
            self._writes.put, reaction_state_key(conversation), sets.dumps()
        )  # the sets as they are now: a later update must not be stored before its events
        return events, save

    async def _presence(self, element: ET.Element) -> None:
        presence = parse_presence(element)
        room = self._rooms.get(presence.room)
        if room is None:
            return
        if presence.type == "error":
            if room.join_result is not None and not room.join_result.done():
                room.join_result.set_result(presence.error or "undefined-condition")
            return
        if 110 in presence.codes or presence.nick == room.nick:
            self._own_presence(room, presence)
            return
        if self._voices.speaks_for(room, presence.nick, presence.real_jid):
            return
        ctx = Occupancy(
            network=self.name,
            event_id=new_event_id(),
            sender_id=room.sender_id(presence.nick),
            known=presence.nick in room.occupants,
        )
        event = presence_to_core(presence, ctx) if room.joined else None
        if presence.type == "unavailable":
            real = room.left(presence.nick)
            if 303 in presence.codes and presence.new_nick:
                room.arrived(presence.new_nick, real)  # its arrival is the same person
        elif presence.type == "available":
            room.arrived(presence.nick, presence.real_jid)
        if event is not None:
            await self.intake.put(event)

    def _own_presence(self, room: Room, presence: WirePresence) -> None:
        if presence.type == "available":
            room.nick = presence.nick
            room.joined = True
            if room.join_result is not None and not room.join_result.done():
                room.join_result.set_result(None)
            return
        if presence.type != "unavailable":
            return
        if 303 in presence.codes and presence.new_nick:
            room.nick = presence.new_nick
            return
        room.joined = False
        self._log.warning("left_room", room=room.jid, codes=sorted(presence.codes))
        # 301 banned: rejoining is pointless; 332 shutdown: the reconnect rejoins.
        if not presence.codes & {301, 332}:
            self._session.rejoin(room)

    def _remember_sent(self, sid: str, oid: str) -> None:
        """Our copy's stanza-id -> its origin-id, which a later correction must name.
        Stored without holding up the inbound queue, with the other writes waiting."""
        self._sent_ids.put(sent_key(sid), oid)

    def _remember_alias(self, conversation: str, wire: WireMessage, sid: str) -> None:
        """A sender's own message ids -> the id the id map knows it by (the room's
        stanza-id): corrections (XEP-0308) and reactions in a private chat (XEP-0444)
        name the former, so they resolve even after a restart."""
        for mid in {wire.id, wire.origin_id} - {None, sid}:
            key = alias_key(conversation, str(mid))
            self._aliases.put(key, sid)
