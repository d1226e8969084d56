"""XMPP groupchat stanzas ⇄ core events.

`to_core` turns a parsed message into an event once the adapter has looked up the ids it
refers to (`references`), `presence_to_core` an occupant's arrival or departure;
`to_wire` turns an outgoing item into the `<message>` element that goes on the wire.
The event ids and the time a stanza without a delay stamp is dated at come in with the
context, so translating the same stanza twice gives the same event. Every string that
enters a built element has passed `xmlsafe.xml_text`, so any text from any network
yields a well-formed stanza (fuzzed in `tests/unit/test_xmpp_translate.py`). Pure
functions, no I/O.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from imbridge.adapter import Outgoing
from imbridge.errors import PermanentSendError
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    EventId,
    Join,
    Kick,
    Leave,
    Mention,
    Message,
    MessageKind,
    NickChange,
    Origin,
    Presence,
    Reaction,
    RemoteId,
    RichText,
    Sender,
    Topic,
)
from imbridge.mentions import Names
from imbridge.richtext import escape
from imbridge.sanitize import clean_nick, clean_text

from .formatting import rich_to_xhtml, xhtml_to_rich
from .mentions import add_references, add_thread, to_mentions
from .private import Private
from .stanzas import (
    NS_CLIENT,
    NS_CORRECT,
    NS_FALLBACK,
    NS_HINTS,
    NS_OOB,
    NS_REACTIONS,
    NS_RELAY,
    NS_REPLY,
    NS_RETRACT,
    NS_SID,
    WireMessage,
    WirePresence,
    q,
)
from .xmlsafe import xml_text

ME = "/me "
RETRACT_FALLBACK = "This message was deleted."

NOBODY = Names({})
"""No occupants to mention: a private message, or a caller that names none."""


def origin_id(txn_id: str) -> str:
    """The XEP-0359 origin-id of an outgoing item: derived from the outbox's txn id, so
    every retry of one item carries the same id and its reflection is recognised."""
    digest = hashlib.sha256(txn_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"imb-{digest[:32]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    """What `to_core` needs besides the stanza: ids and the sender as the adapter knows
    them (a real JID from the occupant list when the room shows it)."""

    network: str
    event_id: EventId
    sender_id: str
    resolved: Mapping[str, EventId]  # remote id -> event id, from `references`
    now: datetime
    """When the stanza was read: the timestamp of one that carries no delay stamp."""
    private: Private | None = None
    """Set for a private message to the relay (see `private`): where it came from and
    the id it is known by, instead of the room's."""


def references(wire: WireMessage) -> tuple[str, ...]:
    """The remote ids `wire` points at, for the adapter to resolve through the id map."""
    refs = (wire.replace_id, wire.retract_id, wire.reply_id, wire.reaction_id, wire.thread)
    return tuple(i for i in refs if i)


def origin_of(wire: WireMessage, ctx: Inbound) -> Origin:
    """Where `wire` came from, as the core names it."""
    private = ctx.private
    remote_id = private.remote_id if private is not None else wire.remote_id
    return Origin(
        network=ctx.network,
        room=private.room if private is not None else wire.room,
        sender=Sender(
            id=ctx.sender_id,
            name=clean_nick(private.name if private is not None else wire.nick or wire.room),
        ),
        remote_id=RemoteId(remote_id) if remote_id else None,
        timestamp=wire.stamp or ctx.now,
        relayed=wire.relayed_by is not None,
        direct=private is not None,
        recipient=private.person if private is not None else None,
    )


def _body(wire: WireMessage) -> str:
    body = wire.body or ""
    if wire.reply_fallback is not None:
        start, end = wire.reply_fallback
        if 0 <= start < end <= len(body):
            body = body[:start] + body[end:]
    return body


def to_core(wire: WireMessage, ctx: Inbound) -> Event | None:
    """The core event for a groupchat message (or a private one, `ctx.private`), or None
    for one the bridge ignores (no text, a correction or retraction of something never
    seen, a chat state, a reaction update: those are `reactions`')."""
    if wire.reactions is not None:
        return None
    origin = origin_of(wire, ctx)
    if wire.retract_id is not None:
        target = ctx.resolved.get(wire.retract_id)
        return Delete(id=ctx.event_id, origin=origin, target=target) if target else None
    if wire.subject is not None and wire.body is None:
        return Topic(id=ctx.event_id, origin=origin, text=clean_text(wire.subject))
    text = clean_text(_body(wire))
    kind = MessageKind.TEXT
    if text.startswith(ME):
        kind, text = MessageKind.EMOTE, text[len(ME) :]
    rich = (
        xhtml_to_rich(wire.xhtml) if wire.xhtml is not None and kind is MessageKind.TEXT else None
    )
    if wire.replace_id is not None:
        target = ctx.resolved.get(wire.replace_id)
        if target is not None and text.strip():
            return Edit(id=ctx.event_id, origin=origin, target=target, text=text, rich=rich)
    attachments = tuple(
        Attachment(url=clean_text(url), name=clean_text(desc)) for url, desc in wire.oob
    )
    if attachments and text.strip() in {a.url for a in attachments}:
        text = ""  # XEP-0066 convention: the body repeats the URL for plain clients
    if not text.strip() and not attachments:
        return None
    reply_to = ctx.resolved.get(wire.reply_id) if wire.reply_id else None
    return Message(
        id=ctx.event_id,
        origin=origin,
        text=text,
        rich=rich,
        kind=kind,
        reply_to=reply_to,
        attachments=attachments,
        mentions=_mentions(wire, text, kind, ctx.network),
        thread=ctx.resolved.get(wire.thread) if wire.thread else None,
    )


def _mentions(wire: WireMessage, text: str, kind: MessageKind, network: str) -> tuple[Mention, ...]:
    """XEP-0372 mentions, where their offsets still count in `text`: the body as sent,
    less a `/me `; a body the core had to change (a reply fallback cut out, controls
    dropped) would move them, so they are left out then."""
    shift = len(ME) if kind is MessageKind.EMOTE else 0
    if wire.mention_refs == () or wire.reply_fallback is not None:
        return ()
    if wire.body not in (text, ME + text):
        return ()
    refs = tuple((uri, begin - shift, end - shift) for uri, begin, end in wire.mention_refs)
    return to_mentions(refs, text, network)


@dataclass(frozen=True, slots=True, kw_only=True)
class Occupancy:
    """What `presence_to_core` needs besides the stanza: what the room's occupant list
    said about that nick before it (the adapter updates the list itself)."""

    network: str
    event_id: EventId
    sender_id: str
    known: bool
    """The nick was an occupant already: its presence is an update, not an arrival."""


def presence_to_core(
    presence: WirePresence, ctx: Occupancy
) -> Join | Leave | NickChange | Kick | None:
    """An occupant of a room the relay is in arriving or leaving (XEP-0045 §7.2.3,
    §7.14), changing nick (status 303, §7.6; the adapter then counts the new nick as
    present, so its arrival is no join) or kicked (status 307, §8.2); None for a
    presence update of someone already there, or for someone never seen."""
    origin = Origin(
        network=ctx.network,
        room=presence.room,
        sender=Sender(id=ctx.sender_id, name=clean_nick(presence.nick)),
    )
    if presence.type == "unavailable" and ctx.known:
        if 303 in presence.codes and presence.new_nick:
            return NickChange(
                id=ctx.event_id, origin=origin, new_name=clean_nick(presence.new_nick)
            )
        if 307 in presence.codes:
            return Kick(id=ctx.event_id, origin=origin, by=clean_nick(presence.actor)
                        if presence.actor else "", reason=clean_text(presence.reason))  # fmt: skip
        return Leave(id=ctx.event_id, origin=origin)
    if presence.type == "available" and not ctx.known:
        return Join(id=ctx.event_id, origin=origin)
    return None


def _element(parent: ET.Element, ns: str, name: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, q(ns, name), {k: xml_text(v) for k, v in attrs.items()})


def _text(parent: ET.Element, name: str, text: str) -> None:
    ET.SubElement(parent, q(NS_CLIENT, name)).text = xml_text(text)


def _rich(parent: ET.Element, rich: RichText | None, text: str) -> None:
    if rich is not None and rich != escape(text):
        parent.append(rich_to_xhtml(rich))


def _message_body(event: Message) -> str:
    text = event.text
    for attachment in event.attachments:
        if attachment.url not in text:
            text = f"{text}\n{attachment.url}" if text else attachment.url
    if event.kind is MessageKind.EMOTE:
        return ME + text
    return text


def _message_type(event: Event) -> str:
    """`chat` for the answer to a private message, which is all a person is sent."""
    if not event.origin.direct:
        return "groupchat"
    if not isinstance(event, Message):
        raise PermanentSendError(f"{type(event).__name__} is not sent to a person")
    return "chat"


def _retraction(message: ET.Element, target: str | None) -> None:
    if not target:
        raise PermanentSendError("retraction without a known target")
    _text(message, "body", RETRACT_FALLBACK)
    _element(message, NS_RETRACT, "retract", id=target)
    _element(message, NS_FALLBACK, "fallback", **{"for": NS_RETRACT})
    _element(message, NS_HINTS, "store")


def _reactions(message: ET.Element, target: str | None, keys: tuple[str, ...]) -> None:
    """XEP-0444 §4: the whole set on the message `target` (its stanza-id in a room), kept
    in the room's archive like the message it annotates."""
    if not target:
        raise PermanentSendError("reaction without a known target")
    held = _element(message, NS_REACTIONS, "reactions", id=target)
    for key in keys:
        ET.SubElement(held, q(NS_REACTIONS, "reaction")).text = xml_text(key)
    _element(message, NS_HINTS, "store")


def _message_parts(message: ET.Element, item: Outgoing, event: Message, occupants: Names) -> None:
    _text(message, "body", _message_body(event))
    if event.kind is not MessageKind.EMOTE:
        _rich(message, event.rich, event.text)
    offset = len(ME) if event.kind is MessageKind.EMOTE else 0
    add_references(message, event, item.room, occupants, offset=offset)
    if item.thread:
        add_thread(message, item.thread)
    if item.reply_to:
        _element(message, NS_REPLY, "reply", id=item.reply_to)
    if event.attachments:
        x = _element(message, NS_OOB, "x")
        ET.SubElement(x, q(NS_OOB, "url")).text = xml_text(event.attachments[0].url)
        if event.attachments[0].name:
            ET.SubElement(x, q(NS_OOB, "desc")).text = xml_text(event.attachments[0].name)


def to_wire(
    item: Outgoing,
    *,
    identity: str,
    replace_id: str | None = None,
    reactions: tuple[str, ...] = (),
    occupants: Names = NOBODY,
) -> ET.Element:
    """The `<message type="groupchat">` for one outgoing item (`chat`, to a person, for
    the answer to a private message: `origin.direct`). `replace_id` is the
    message id an Edit corrects (XEP-0308 names the original stanza's id, which for the
    relay's own copies is their origin-id); a Delete retracts `item.target` (XEP-0424: a
    groupchat retraction names the room's stanza-id). The `occupants` (the room's index
    of them, `mentions.occupant_names`) the text names get a XEP-0372 mention each; a
    threaded message its `<thread>`. A Reaction sends `reactions`, the relay's whole set
    on `item.target` after it (XEP-0444 replaces the set each time)."""
    oid = origin_id(item.txn_id)
    event = item.event
    message = ET.Element(
        q(NS_CLIENT, "message"),
        {"type": _message_type(event), "to": xml_text(item.room), "id": oid},
    )
    match event:
        case Message():
            _message_parts(message, item, event, occupants)
        case Edit():
            target = replace_id or item.target
            if not target:
                raise PermanentSendError("correction without a known target")
            _text(message, "body", event.text)
            _rich(message, event.rich, event.text)
            _element(message, NS_CORRECT, "replace", id=target)
            add_references(message, event, item.room, occupants)
        case Delete():
            _retraction(message, item.target)
        case Topic():
            _text(message, "subject", event.text)
        case Reaction():
            _reactions(message, item.target, reactions)
        case Join() | Leave() | Presence() | NickChange() | Kick():
            raise PermanentSendError(f"{type(event).__name__} is not sent to XMPP rooms")
        case _:
            assert_never(event)
    _element(message, NS_SID, "origin-id", id=oid)
    _element(message, NS_RELAY, "relay", by=identity, event=event.id)
    return message
