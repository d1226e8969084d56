"""Sending: one outbox item to one stanza in its room, confirmed by its reflection.

A send takes its turn in the room before it first waits, so stanzas reach the room in
the order the sends started, even when one of them spends seconds re-uploading its
attachments (XEP-0363, `media`). An item counts as sent only when the room reflects its
origin-id back (`delivery`); a retry of an item still in flight waits for the same
stanza instead of posting a second copy, and an item the room already has returns its
id. Every failure raises, retryable or permanent: nothing is dropped here. The stanza
itself is `proto.translate.to_wire`'s; this part decides when it goes and what counts
as done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from typing import Any

from slixmpp.stanza import Message as SlixMessage
from slixmpp.xmlstream import XMLStream

from imbridge.adapter import Outgoing
from imbridge.errors import RetryableSendError
from imbridge.events import Edit, Message, Reaction, RemoteId, Topic

from .config import XmppConfig
from .delivery import RESEND, Delivery, Pending
from .media import Uploader
from .proto.reactions import RelaySets, relay_state_key
from .proto.translate import origin_id, to_wire
from .receive import Receiver
from .rooms import Room, Turn
from .session import Login, Session
from .voices import Voices
from .writes import CoalescedWrites

ROOMS_KEPT = 256
"""Rooms whose reaction sets stay in memory; the others are read again when needed."""


class Sender:
    """Writes outgoing items to the stream and waits for the rooms to confirm them."""

    def __init__(
        self,
        name: str,
        config: XmppConfig,
        *,
        identity: str,
        rooms: dict[str, Room],
        session: Session,
        login: Login,
        delivery: Delivery,
        receiver: Receiver,
        uploads: Uploader,
        voices: Voices,
        writes: CoalescedWrites,
    ) -> None:
        self.name = name
        self.config = config
        self.identity = identity
        self._rooms = rooms
        self._session = session
        self._login = login
        self._delivery = delivery
        self._receiver = receiver
        self._uploads = uploads
        self._voices = voices
        self._uploaded: OrderedDict[str, Message] = OrderedDict()  # origin-id -> relinked
        self._writes = writes
        self._relay_sets: OrderedDict[str, RelaySets] = OrderedDict()
        """The relay's own reaction sets of recent rooms, as stored (`proto.reactions`)."""

    async def send(self, item: Outgoing) -> RemoteId:
        client = self._session.client
        if client is None or not self._session.connected:
            raise RetryableSendError("not connected")
        if item.event.origin.direct:
            return self._send_private(client, item)
        room = self._rooms.get(item.room.lower())
        if room is None or not room.joined:  # the daemon joins every room it routes to
            raise RetryableSendError(f"not in {item.room}")
        await self._voices.enter(client, room, item)  # a puppet joins before it speaks
        turn = room.take_turn()  # before the first wait: the room gets sends in this order
        try:
            if room.catching_up:  # its archive may still confirm this item: no resend yet
                try:
                    async with asyncio.timeout(self.config.ack_timeout):
                        await room.caught_up.wait()
                except TimeoutError:
                    raise RetryableSendError(f"still reading the archive of {item.room}") from None
            written = await self._write(client, room, item, turn)
        finally:
            turn.done()
        if not isinstance(written, Pending):
            return written
        pending = written
        try:
            async with asyncio.timeout(self.config.ack_timeout):
                result = await asyncio.shield(pending.future)
        except TimeoutError:
            raise RetryableSendError("the room did not confirm the message in time") from None
        if result is RESEND:
            raise RetryableSendError("connection lost before the room confirmed the message")
        return result

    async def _write(
        self, client: Any, room: Room, item: Outgoing, turn: Turn
    ) -> Pending | RemoteId:
        """Puts the item's stanza on the wire, in its turn, unless the room has it already
        (its id) or it is in flight (its pending delivery)."""
        oid = origin_id(item.txn_id)
        if (done := self._delivery.delivered(oid)) is not None:
            return done
        if (pending := self._in_flight(oid)) is not None:
            return pending
        item = await self._with_uploads(item, oid)
        element = to_wire(
            item,
            identity=self.identity,
            replace_id=await self._replace_id(item),
            reactions=await self._reaction_set(room, item),
            occupants=room.names(),
        )
        if (sender := self._voices.speaker(item)) is not None:
            element.set("from", sender)
        await turn.wait()
        if not self._session.connected or client is not self._session.client:
            raise RetryableSendError("connection lost while the message got ready")
        if (done := self._delivery.delivered(oid)) is not None:
            return done  # confirmed while this one got ready (a catch-up, a retry)
        if (pending := self._in_flight(oid)) is not None:
            return pending
        pending = self._delivery.track(
            oid, room.jid, self._session.generation, time.time(), event_id=item.event.id
        )
        if isinstance(item.event, Topic):
            self._delivery.track_topic(oid, room.jid)
        client.send(SlixMessage(client, xml=element))  # type: ignore[no-untyped-call]  # slixmpp
        return pending

    def _send_private(self, client: XMLStream, item: Outgoing) -> RemoteId:
        """A `chat` message to a person (the answer to a private message), from the
        session's own JID (a component's: its domain). Nothing reflects a chat message,
        so nothing confirms it: once on the stream (which stream management keeps across
        a dropped connection) it counts as sent, and its id is its own origin-id, with
        the conversation before it as the ids of the chat's other messages have (see
        `private`), so a reaction to it resolves."""
        element = to_wire(item, identity=self.identity)
        if (sender := self._voices.speaker(item)) is not None:
            element.set("from", sender)  # a direct message from a puppet (component mode)
        client.send(SlixMessage(client, xml=element))  # type: ignore[no-untyped-call]  # slixmpp
        bare, _, nick = item.room.partition("/")
        conversation = item.room if bare.lower() in self._rooms and nick else bare.lower()
        return RemoteId(f"{conversation}:{element.get('id')}")

    def _in_flight(self, oid: str) -> Pending | None:
        """The delivery to wait for instead of writing again; None once none is, or once
        it has waited so long in this session that it is written again (the same id, so
        the room's reflection confirms either copy)."""
        pending = self._delivery.pending(oid)
        if pending is None:
            return None
        stale = time.time() - pending.sent_at > 3 * self.config.ack_timeout
        return None if stale and pending.generation == self._session.generation else pending

    async def _with_uploads(self, item: Outgoing, oid: str) -> Outgoing:
        """The item with its attachments re-uploaded to the server (XEP-0363), once per
        item: a resend after a lost session reuses the copies."""
        event = item.event
        if self.config.media != "upload" or not isinstance(event, Message):
            return item
        if not event.attachments:
            return item
        relinked = self._uploaded.get(oid)
        if relinked is None:
            relinked = await self._uploads.relink(
                self._session.client, event, network=self.name,
                domain=self._login.upload_domain,
                sender=self._voices.speaker(item) or self._login.upload_sender,
            )  # fmt: skip
            self._uploaded[oid] = relinked
            while len(self._uploaded) > 1_000:
                self._uploaded.popitem(last=False)
        return dataclasses.replace(item, event=relinked)

    async def _reaction_set(self, room: Room, item: Outgoing) -> tuple[str, ...]:
        """For a Reaction: the whole set its speaker shows on the target after it, the
        change applied and stored (a retry applies it again, to the same set)."""
        event = item.event
        if not isinstance(event, Reaction) or not item.target:
            return ()
        sets = self._relay_sets.get(room.jid)
        if sets is None:
            loaded = RelaySets.loads(await self._writes.get(relay_state_key(room.jid)))
            sets = self._relay_sets.setdefault(room.jid, loaded)  # one read may have raced
        self._relay_sets.move_to_end(room.jid)
        while len(self._relay_sets) > ROOMS_KEPT:
            self._relay_sets.popitem(last=False)
        speaker = self._voices.speaker(item) or ""
        who = f"{event.origin.network}\n{event.origin.sender.id}"
        sets.apply(speaker, item.target, who, event.key, removed=event.removed)
        self._writes.put(relay_state_key(room.jid), sets.dumps())
        return sets.keys(speaker, item.target)

    async def _replace_id(self, item: Outgoing) -> str | None:
        """For an Edit of one of our own copies: the origin-id that copy carried."""
        if not isinstance(item.event, Edit) or not item.target:
            return None
        target = str(item.target)
        return await self._receiver.origin_id_of(target) or target
