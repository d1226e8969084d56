"""Sending: one rendered item to one room, as a message, a redaction, or (with
`media: upload`) text plus one uploaded media event per attachment.

`send` returns the homeserver's event id or raises, never drops; every request carries
the outbox's stable txn id (or one derived from it), so a retry after a crash is
deduplicated by the homeserver instead of posted twice.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from nio import (
    ErrorResponse,
    RoomRedactResponse,
    RoomSendResponse,
    UploadResponse,
)

from imbridge.adapter import Cursors, Outgoing
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import Edit, Event, Message, Reaction, Recipient, RemoteId

from . import media
from .config import MatrixConfig
from .ghosts import Ghosts
from .portals import Portals
from .proto.mentions import with_mentions
from .proto.reactions import DUPLICATE, Annotation, reactor, state_key
from .proto.translate import RedactWire, SendWire, Wire, attachment_lines, to_wire
from .rooms import NETWORK_ERRORS, Rooms
from .session import Session


class Transmitter:
    """`send` of the adapter contract, through the session's client."""

    def __init__(
        self,
        name: str,
        config: MatrixConfig,
        *,
        session: Session,
        rooms: Rooms,
        cursors: Cursors,
        log: Any,
        ghosts: Ghosts | None = None,
        portals: Portals | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._ghosts = ghosts
        self._portals = portals
        self._session = session
        self._client = session.client
        self._rooms = rooms
        self._cursors = cursors
        self._log = log
        self._annotating = asyncio.Lock()
        """Reactions may be sent side by side (the outbox lets them); each reads and
        writes the annotation state, so they take turns."""

    async def send(self, item: Outgoing) -> RemoteId:
        if not self._session.connected:
            raise RetryableSendError("matrix: offline")
        to = item.event.origin.recipient
        if to is not None and to.network == self.name:
            return await self._send_direct(item, to.user)
        if item.event.origin.direct and self._portals is not None:
            portal = await self._portals.portal(item.room)
            if portal is not None:  # the bridge's answer in a portal (a refusal): the
                # bot is not in it, so the ghost the user talks to says it
                return await self._request(portal.room_id, to_wire(item), item.txn_id,
                                           portal.ghost)  # fmt: skip
        room_id = self._rooms.ids.get(item.room)
        if room_id is None and item.event.origin.direct and item.room in self._rooms.direct:
            room_id = item.room  # an answer in a direct chat, which is named by its id
        if room_id is None or room_id not in self._rooms.joined:
            raise RetryableSendError(f"matrix: not in {item.room} yet")
        if self._rooms.is_encrypted(room_id):
            raise PermanentSendError(f"matrix: {item.room} is encrypted; not bridged")
        event = item.event
        if isinstance(event, Reaction):
            return await self._react(room_id, item, event, await self._speaker(item, room_id))
        try:
            wire = self._mentioning(to_wire(item), item.event, room_id)
        except ValueError as exc:
            raise PermanentSendError(f"matrix: {exc}") from exc
        as_user = await self._speaker(item, room_id)
        if self.config.media == "upload" and isinstance(event, Message) and event.attachments:
            return await self._send_with_media(room_id, item, event, as_user)
        return await self._request(room_id, wire, item.txn_id, as_user)

    async def _react(
        self, room_id: str, item: Outgoing, event: Reaction, as_user: str | None
    ) -> RemoteId:
        """Annotates the relayed copy, or redacts the annotation once nobody it stands for
        still reacts with that key (`proto.reactions`). The state is stored after the
        request: a retry finds the same txn id, which the homeserver deduplicates."""
        if item.target is None:
            raise PermanentSendError("matrix: a reaction needs the target's Matrix event id")
        async with self._annotating:
            return await self._annotate(room_id, item, item.target, event, as_user)

    async def _annotate(
        self, room_id: str, item: Outgoing, target: RemoteId, event: Reaction, as_user: str | None
    ) -> RemoteId:
        # A ghost (appservice mode) reacts for itself alone; the relay account's one
        # annotation per key stands for everyone it relays.
        slot = state_key(room_id, target, event.key) + (f"\n{as_user}" if as_user else "")
        held = Annotation.loads(await self._cursors.get(slot))
        who = reactor(event)
        if not event.removed:
            if held.posted:
                await self._cursors.set(slot, held.adding(who).dumps())
                return RemoteId(held.event_id)
            try:
                posted = await self._request(room_id, to_wire(item), item.txn_id, as_user)
            except PermanentSendError as exc:
                if DUPLICATE not in str(exc):
                    raise
                posted = RemoteId("")  # the account has that annotation already
            await self._cursors.set(slot, Annotation(posted, (who,)).dumps())
            return posted
        left = held.removing(who)
        if not left.orphaned:
            await self._cursors.set(slot, left.dumps())
            return RemoteId("")  # others still react with it, or it was never posted
        undo = RedactWire(target=RemoteId(left.event_id))
        redaction = await self._request(room_id, undo, item.txn_id, as_user)
        await self._cursors.set(slot, Annotation().dumps())
        return redaction

    def _mentioning(self, wire: Wire, event: Event, room_id: str) -> Wire:
        """`wire` with the pills and `m.mentions` of the members `event` mentions."""
        if not isinstance(wire, SendWire) or not isinstance(event, Message | Edit):
            return wire
        if wire.event_type != "m.room.message":
            return wire
        members = self._rooms.members(room_id)
        content = wire.content
        new = content.get("m.new_content")
        if isinstance(event, Edit) and isinstance(new, dict):
            marked = with_mentions(new, event, members)
            content = {**content, "m.new_content": marked, "m.mentions": marked["m.mentions"]}
        else:
            content = with_mentions(content, event, members)
        return SendWire(event_type=wire.event_type, content=content)

    async def _speaker(self, item: Outgoing, room_id: str) -> str | None:
        """The ghost an item is sent as in appservice mode: whoever said it, from any
        other room (a Matrix room on this homeserver too: with no prefix in appservice
        mode, only a ghost says who spoke). The bridge's own notices, which stay in
        the room they concern, and answers in direct chats come from the bot."""
        origin = item.event.origin
        if self._ghosts is None or origin.direct:
            return None
        if origin.network == self.name and origin.room == item.room:
            return None
        sender = origin.sender
        ghost = await self._ghosts.ready(origin.network, sender.id, sender.name, room_id)
        if self._portals is not None and origin.network != self.name:
            # a Matrix user may invite the ghost to a portal with this person
            person = Recipient(network=origin.network, user=sender.id)
            await self._portals.remember_ghost(ghost, person, keep=True)
        return ghost

    async def _send_direct(self, item: Outgoing, to: str) -> RemoteId:
        """A direct message from someone elsewhere to the Matrix user `to`, posted by
        their ghost in the portal of the two (opened on the first one); `to` may also
        name the portal itself, by its room id."""
        if self._ghosts is None or self._portals is None:
            raise PermanentSendError("matrix: direct messages need appservice mode")
        origin = item.event.origin
        if not isinstance(item.event, Message):
            raise PermanentSendError("matrix: only messages go to a portal")
        sender = origin.sender
        ghost = await self._ghosts.prepare(origin.network, sender.id, sender.name)
        person = Recipient(network=origin.network, user=origin.room)
        await self._portals.remember_ghost(ghost, person)
        if to.startswith("!"):
            portal = await self._portals.portal(to)
            if portal is None:
                raise PermanentSendError(f"matrix: {to} is not a portal")
        else:
            portal = await self._portals.open(ghost, to, person)
        try:
            wire = to_wire(item)
        except ValueError as exc:
            raise PermanentSendError(f"matrix: {exc}") from exc
        return await self._request(portal.room_id, wire, item.txn_id, portal.ghost)

    async def _send_with_media(
        self, room_id: str, item: Outgoing, event: Message, as_user: str | None
    ) -> RemoteId:
        """Text first (if any), then one media event per attachment, each with its own
        txn id derived from the item's, so a retry re-sends none of them twice."""
        first: RemoteId | None = None
        if event.text:
            text_item = Outgoing(room=item.room, event=_without_attachments(event),
                                 reply_to=item.reply_to, txn_id=item.txn_id)  # fmt: skip
            wire = self._mentioning(to_wire(text_item), text_item.event, room_id)
            first = await self._request(room_id, wire, item.txn_id, as_user)
        marker = to_wire(item)
        assert isinstance(marker, SendWire)  # noqa: S101 - a Message always sends
        marks = {k: v for k, v in marker.content.items() if k.startswith("org.imbridge")}
        for i, att in enumerate(event.attachments):
            try:
                got = await media.fetch(att.url, self.config.media_max_bytes,
                                        self.config.request_timeout,
                                        self.config.media_allow_origins)  # fmt: skip
            except media.LinkOnly as exc:
                # Never fetched (an internal address, say): readers get the link itself.
                self._log.warning("attachment_linked", reason=str(exc))
                link = {"msgtype": "m.text", "body": attachment_lines((att,)), **marks}
                wire = SendWire(event_type="m.room.message", content=link)
                rid = await self._request(room_id, wire, f"{item.txn_id}.{i}", as_user)
                first = first or rid
                continue
            async with asyncio.timeout(self.config.request_timeout * 3):
                up, _ = await self._client.upload(
                    _Bytes(got.data), content_type=got.mimetype,
                    filename=att.name or "file", filesize=len(got.data),
                )  # fmt: skip
            if not isinstance(up, UploadResponse):
                _raise_for(up, "upload")
            content = {
                "msgtype": media.msgtype_for(got.mimetype),
                "body": att.name or "file",
                "url": up.content_uri,
                "info": {"mimetype": got.mimetype, "size": len(got.data)},
                **marks,
            }
            wire = SendWire(event_type="m.room.message", content=content)
            rid = await self._request(room_id, wire, f"{item.txn_id}.{i}", as_user)
            first = first or rid
        assert first is not None  # noqa: S101 - a message has text or attachments
        return first

    async def _request(
        self, room_id: str, wire: Wire, txn_id: str, as_user: str | None = None
    ) -> RemoteId:
        if as_user is not None and self._ghosts is not None:
            match wire:
                case SendWire():
                    return await self._ghosts.send(
                        as_user, room_id, wire.event_type, wire.content, txn_id
                    )
                case RedactWire():
                    return await self._ghosts.redact(as_user, room_id, wire.target, txn_id)
        resp: Any
        try:
            async with asyncio.timeout(self.config.request_timeout):
                match wire:
                    case SendWire():
                        resp = await self._client.room_send(
                            room_id, wire.event_type, wire.content, tx_id=txn_id
                        )
                    case RedactWire():
                        resp = await self._client.room_redact(room_id, wire.target, tx_id=txn_id)
        except NETWORK_ERRORS as exc:
            raise RetryableSendError(f"matrix: {type(exc).__name__}: {exc}") from exc
        if isinstance(resp, RoomSendResponse | RoomRedactResponse):
            return RemoteId(resp.event_id)
        _raise_for(resp, "send")


class _Bytes:
    """A data provider for `AsyncClient.upload` that can be asked again on a retry."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __call__(self, _got_429: int, _got_timeouts: int) -> bytes:
        return self._data


def _without_attachments(event: Message) -> Message:
    return Message(id=event.id, origin=event.origin, text=event.text, rich=event.rich,
                   kind=event.kind, reply_to=event.reply_to)  # fmt: skip


def _http_status(resp: object) -> int | None:
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


def _raise_for(resp: object, what: str) -> NoReturn:
    """Turn a homeserver error into the outbox's two kinds of failure."""
    status = _http_status(resp)
    code = resp.status_code if isinstance(resp, ErrorResponse) else None
    msg = f"matrix {what}: {resp}"
    if status == 429 or code == "M_LIMIT_EXCEEDED":
        ms = getattr(resp, "retry_after_ms", None)
        retry = ms / 1000 if isinstance(ms, int | float) and ms > 0 else 1.0
        raise RetryableSendError(msg, retry_after=retry)
    if status is None or status >= 500 or code == "M_UNKNOWN_TOKEN":
        raise RetryableSendError(msg)
    raise PermanentSendError(msg)
