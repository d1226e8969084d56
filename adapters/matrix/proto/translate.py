"""Matrix events (raw client-server JSON) ⇄ core events. Pure functions, no I/O.

Incoming translation is two steps because Matrix names edit, redaction and reply targets
by *Matrix* event id, which only the core's id map can turn into core event ids:
`parse_event` says what a wire event means (a `ParsedEvent`, holding remote ids), the
receiver resolves those ids through its cursors, and `to_core` builds the event. Outgoing,
`to_wire` turns one rendered `Outgoing` into the request to make.

Every incoming string passes `clean_text`/`clean_nick`, every formatted body
`formatting.from_matrix`; reply fallbacks are stripped (the spec's "Fallbacks for rich
replies"), so the quoted original, which policy never saw, cannot ride along.

What has no core counterpart is kept by its text fallback, as a message that names its
Matrix type (`Message.native_type`): a sticker is its body plus the image, a poll its
question and numbered answers, a poll's end its announcement, a location its description
and `geo:` URI, an unknown msgtype its body. A poll vote carries no text a client
without polls would show, so it is archived (which answers were chosen) but not relayed.
Reactions (`m.reaction`, an `m.annotation`) become `Reaction`; a reaction is taken back
by redacting it, which the core recognises through the id map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, assert_never

from imbridge.adapter import Outgoing
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
from imbridge.richtext import escape
from imbridge.sanitize import clean_nick, clean_text

from .attachments import MediaLinker, attachment, attachment_lines, media_url, mxc_parts
from .formatting import HTML_FORMAT, from_matrix, plain_of, to_matrix
from .mentions import read_pills
from .polls import POLL_TYPES, poll_text
from .reactions import annotation_content

__all__ = [
    "RELAY_KEY",
    "MediaLinker",
    "ParsedEvent",
    "RedactWire",
    "SendWire",
    "Wire",
    "attachment_lines",
    "direct_inviter",
    "media_url",
    "mxc_parts",
    "parse_event",
    "strip_reply_fallback",
    "to_core",
    "to_wire",
]

RELAY_KEY = "org.imbridge.relay"
"""Content key on every message the bridge posts: a bridge that reads it (this one, or
another imbridge sharing the room) marks the event relayed and never relays it again."""

_KINDS = {"m.text": MessageKind.TEXT, "m.emote": MessageKind.EMOTE,
          "m.notice": MessageKind.NOTICE}  # fmt: skip
_MSGTYPES = {v: k for k, v in _KINDS.items()}
MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})
FOREIGN_RELAY_KEYS = ("org.imbridge.relay", "fi.mau.double_puppet_source", "m.bridge")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedEvent:
    """What one Matrix event means, with its targets still Matrix event ids."""

    action: Literal["message", "edit", "delete", "join", "leave", "topic", "reaction", "kick"]
    remote_id: RemoteId
    sender: str
    timestamp: datetime
    relayed: bool = False
    text: str = ""
    rich: RichText | None = None
    kind: MessageKind = MessageKind.TEXT
    attachments: tuple[Attachment, ...] = ()
    target: RemoteId | None = None  # edited, redacted or reacted-to event
    reply_to: RemoteId | None = None
    native_type: str = ""
    archive_only: bool = False
    by: str = ""
    """A kick's (or ban's) author: the member who removed `sender`."""
    thread: RemoteId | None = None  # the root of the `m.thread` it belongs to
    mentions: tuple[Mention, ...] = ()  # from its pills, network still unnamed


@dataclass(frozen=True, slots=True, kw_only=True)
class SendWire:
    """A `PUT /rooms/{room}/send/{type}/{txn}` to make."""

    event_type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedactWire:
    """A `PUT /rooms/{room}/redact/{target}/{txn}` to make."""

    target: RemoteId


Wire = SendWire | RedactWire


def strip_reply_fallback(body: str) -> str:
    """The body without the `> <@user> quoted` lines a rich reply starts with."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _timestamp(source: dict[str, Any]) -> datetime:
    ts = source.get("origin_server_ts")
    if isinstance(ts, int) and 0 <= ts < 2**46:
        return datetime.fromtimestamp(ts / 1000, UTC)
    return datetime.now(UTC)


def _is_relayed(content: dict[str, Any]) -> bool:
    return any(key in content for key in FOREIGN_RELAY_KEYS)


def _text_and_rich(content: dict[str, Any], *, reply: bool) -> tuple[str, RichText | None]:
    body = content.get("body")
    text = body if isinstance(body, str) else ""
    if reply:
        text = strip_reply_fallback(text)
    text = clean_text(text)
    rich: RichText | None = None
    formatted = content.get("formatted_body")
    if content.get("format") == HTML_FORMAT and isinstance(formatted, str):
        rich = from_matrix(formatted)
        if not rich.strip():
            rich = None  # markup with no visible content: the plain body speaks for it
    return text, rich


def _relation(content: dict[str, Any]) -> tuple[str | None, RemoteId | None, RemoteId | None]:
    """(rel_type, related event, replied-to event) of `m.relates_to`, if well formed."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None, None, None
    rel_type = rel.get("rel_type") if isinstance(rel.get("rel_type"), str) else None
    related = rel.get("event_id") if isinstance(rel.get("event_id"), str) else None
    reply = rel.get("m.in_reply_to")
    reply_id = reply.get("event_id") if isinstance(reply, dict) else None
    if rel.get("is_falling_back") is True:  # a thread's fallback, not a real reply
        reply_id = None
    return (
        rel_type,
        RemoteId(related) if related else None,
        RemoteId(reply_id) if isinstance(reply_id, str) and reply_id else None,
    )


def _message(  # noqa: PLR0911 - one early exit per malformed shape
    source: dict[str, Any], homeserver: str, base: dict[str, Any], link: MediaLinker | None
) -> ParsedEvent | None:
    content = source.get("content")
    if not isinstance(content, dict) or not content:
        return None  # redacted, or not a message at all
    rel_type, related, reply_to = _relation(content)
    if rel_type == "m.replace" and related:
        new = content.get("m.new_content")
        if not isinstance(new, dict):
            return None
        text, rich = _text_and_rich(new, reply=False)
        if not text and rich is None:
            return None
        rich, mentions = read_pills(rich, text, "")
        return ParsedEvent(action="edit", target=related, text=text, rich=rich,
                           mentions=mentions, **base)  # fmt: skip
    msgtype = content.get("msgtype")
    if msgtype in MEDIA_MSGTYPES:
        att = attachment(content, homeserver, link)
        if att is None:
            return None
        caption = ""
        if content.get("filename") and content.get("body") != content.get("filename"):
            caption = clean_text(str(content.get("body", "")))
        return ParsedEvent(action="message", attachments=(att,), text=caption, reply_to=reply_to,
                       **base)  # fmt: skip
    if msgtype == "m.location":
        return _location(content, base, reply_to)
    name = msgtype if isinstance(msgtype, str) else ""
    kind = _KINDS.get(name, MessageKind.TEXT)
    native = "" if name in _KINDS else clean_nick(name)[:64]  # an unknown msgtype, by name
    text, rich = _text_and_rich(content, reply=reply_to is not None)
    if not text.strip():
        if rich is None:
            return None
        text = clean_text(plain_of(rich))  # reduce to visible text, never drop
    rich, mentions = read_pills(rich, text, "")
    thread = related if rel_type == "m.thread" else None
    return ParsedEvent(action="message", text=text, rich=rich, kind=kind, reply_to=reply_to,
                   native_type=native, thread=thread, mentions=mentions, **base)  # fmt: skip


def _reaction(content: dict[str, Any], base: dict[str, Any]) -> ParsedEvent | None:
    """`m.reaction`: an `m.annotation` relation with its key (Matrix spec, "Reactions")."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict) or rel.get("rel_type") != "m.annotation":
        return None
    target, key = rel.get("event_id"), rel.get("key")
    if not isinstance(target, str) or not target or not isinstance(key, str):
        return None
    key = clean_nick(key)[:64]  # one emoji or a short word, never a payload
    if not key:
        return None
    return ParsedEvent(action="reaction", target=RemoteId(target), text=key, **base)


def _sticker(
    content: dict[str, Any], homeserver: str, base: dict[str, Any], link: MediaLinker | None
) -> ParsedEvent | None:
    """`m.sticker`: its body (the sticker's description) and the image, as clients show
    a sticker they cannot render."""
    body = content.get("body")
    text = clean_text(body) if isinstance(body, str) else ""
    att = attachment({**content, "body": text or "sticker"}, homeserver, link)
    if att is None and not text.strip():
        return None
    _, _, reply_to = _relation(content)
    return ParsedEvent(action="message", text=text or "(sticker)", reply_to=reply_to,
                   attachments=(att,) if att else (), native_type="m.sticker",
                   **base)  # fmt: skip


def _poll(event_type: str, content: dict[str, Any], base: dict[str, Any]) -> ParsedEvent | None:
    said = poll_text(event_type, content)
    if said is None:
        return None
    rel = content.get("m.relates_to")
    related = rel.get("event_id") if isinstance(rel, dict) else None
    return ParsedEvent(action="message", text=said.text, native_type=event_type,
                   archive_only=said.archive_only,
                   reply_to=RemoteId(related) if isinstance(related, str) and related else None,
                   **base)  # fmt: skip


def _location(
    content: dict[str, Any], base: dict[str, Any], reply_to: RemoteId | None
) -> ParsedEvent | None:
    """`m.location`: its description and `geo:` URI, which maps apps open."""
    body = content.get("body")
    geo = content.get("geo_uri")
    parts = [clean_text(p) for p in (body, geo) if isinstance(p, str) and p.strip()]
    if isinstance(geo, str) and not geo.startswith("geo:"):
        parts = parts[:1]
    text = "\n".join(dict.fromkeys(parts))
    if not text.strip():
        return None
    return ParsedEvent(action="message", text=text, native_type="m.location", reply_to=reply_to,
                   **base)  # fmt: skip


def direct_inviter(invite_state: list[dict[str, Any]], own_id: str) -> str | None:
    """Who invited `own_id` to a direct chat (the invite's `is_direct`, Matrix spec
    "Direct Messaging"), or None for an invite to an ordinary room."""
    for event in invite_state:
        content = _dict(event.get("content"))
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == own_id
            and content.get("membership") == "invite"
            and content.get("is_direct") is True
            and isinstance(event.get("sender"), str)
        ):
            return str(event["sender"])
    return None


def _member(
    source: dict[str, Any], content: dict[str, Any], base: dict[str, Any]
) -> ParsedEvent | None:
    """Joins, leaves, and kicks or bans (a leave whose sender is not the member it
    removes: the member is then the event's `sender`, the remover `by`); profile
    changes (a join after a join) are not news."""
    membership = content.get("membership")
    before = _dict(_dict(source.get("unsigned")).get("prev_content")).get("membership")
    if membership == "join" and before != "join":
        return ParsedEvent(action="join", **base)
    if membership in ("leave", "ban") and before == "join":
        reason = content.get("reason")
        text = clean_text(reason) if isinstance(reason, str) else ""
        member = source.get("state_key")
        if isinstance(member, str) and member and member != base["sender"]:
            kicked = {**base, "sender": member}
            return ParsedEvent(action="kick", text=text, by=base["sender"], **kicked)
        return ParsedEvent(action="leave", text=text, **base)
    return None


def parse_event(  # noqa: PLR0911 - a dispatch
    source: dict[str, Any], homeserver: str, *, link: MediaLinker | None = None
) -> ParsedEvent | None:
    """The meaning of one timeline event, or None for what the bridge ignores (state it
    does not relay, redacted or malformed events, encrypted payloads). Media are linked
    through `link` if given, else as the homeserver's plain download URL."""
    event_id, sender = source.get("event_id"), source.get("sender")
    if not isinstance(event_id, str) or not isinstance(sender, str) or not sender:
        return None
    content = _dict(source.get("content"))
    base: dict[str, Any] = {
        "remote_id": RemoteId(event_id),
        "sender": sender,
        "timestamp": _timestamp(source),
        "relayed": _is_relayed(content),
    }
    etype = source.get("type")
    match etype:
        case "m.room.message":
            return _message(source, homeserver, base, link)
        case "m.reaction":
            return _reaction(content, base)
        case "m.sticker":
            return _sticker(content, homeserver, base, link)
        case str() if etype in POLL_TYPES:
            return _poll(etype, content, base)
        case "m.room.redaction":
            redacts = source.get("redacts") or content.get("redacts")
            if not isinstance(redacts, str) or not redacts:
                return None
            return ParsedEvent(action="delete", target=RemoteId(redacts), **base)
        case "m.room.member":
            return _member(source, content, base)
        case "m.room.topic":
            topic = content.get("topic")
            if not isinstance(topic, str):
                return None
            return ParsedEvent(action="topic", text=clean_text(topic), **base)
        case _:
            return None


def to_core(  # noqa: PLR0911 - one return per event kind
    inbound: ParsedEvent,
    *,
    event_id: EventId,
    network: str,
    room: str,
    sender_name: str,
    target: EventId | None = None,
    reply_to: EventId | None = None,
    direct: bool = False,
    thread: EventId | None = None,
) -> Event | None:
    """The core event for a parsed Matrix event whose targets the adapter has resolved.

    An edit of a message the bridge never saw becomes a new message (its text is all a
    reader needs); a redaction of an unknown event means nothing elsewhere: None.
    """
    origin = Origin(
        network=network,
        room=room,
        sender=Sender(id=inbound.sender, name=clean_nick(sender_name)),
        remote_id=inbound.remote_id,
        timestamp=inbound.timestamp,
        relayed=inbound.relayed,
        direct=direct,
    )
    mentions = tuple(dataclasses.replace(m, network=network) for m in inbound.mentions)
    match inbound.action:
        case "message":
            return Message(id=event_id, origin=origin, text=inbound.text, rich=inbound.rich,
                           kind=inbound.kind, reply_to=reply_to,
                           attachments=inbound.attachments, native_type=inbound.native_type,
                           archive_only=inbound.archive_only, mentions=mentions,
                           thread=thread)  # fmt: skip
        case "reaction":
            if target is None:  # a reaction to what the bridge never saw: nothing to name
                return None
            return Reaction(id=event_id, origin=origin, target=target, key=inbound.text)
        case "edit":
            if target is None:
                return Message(id=event_id, origin=origin, text=inbound.text, rich=inbound.rich,
                               mentions=mentions)  # fmt: skip
            return Edit(id=event_id, origin=origin, target=target, text=inbound.text,
                        rich=inbound.rich, mentions=mentions)  # fmt: skip
        case "delete":
            return None if target is None else Delete(id=event_id, origin=origin, target=target)
        case "join":
            return Join(id=event_id, origin=origin)
        case "leave":
            return Leave(id=event_id, origin=origin, reason=inbound.text)
        case "kick":
            return Kick(id=event_id, origin=origin, by=clean_nick(inbound.by), reason=inbound.text)
        case "topic":
            return Topic(id=event_id, origin=origin, text=inbound.text)
        case _:
            assert_never(inbound.action)


def _body(text: str, rich: RichText | None, kind: MessageKind) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": _MSGTYPES[kind], "body": text}
    if rich is not None:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = to_matrix(rich)
    return content


def _marker(event: Event) -> dict[str, Any]:
    return {RELAY_KEY: {"network": event.origin.network, "event": event.id}}


def _notice(event: Event, text: str) -> SendWire:
    content = {**_body(text, None, MessageKind.NOTICE), **_marker(event)}
    return SendWire(event_type="m.room.message", content=content)


def thread_relation(root: RemoteId, reply_to: RemoteId | None) -> dict[str, Any]:
    """`m.relates_to` of a message in the thread of `root` (Matrix spec, "Threading"):
    with a reply fallback for clients without threads, marked as such unless the
    message really replies to `reply_to`. The fallback should name the thread's latest
    event, which the relay does not track; the root keeps it in the conversation."""
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": reply_to is None,
        "m.in_reply_to": {"event_id": reply_to or root},
    }


def _message_wire(item: Outgoing, event: Message) -> SendWire:
    text, rich = event.text, event.rich
    if event.attachments:
        links = attachment_lines(event.attachments)
        text = f"{text}\n{links}" if text else links
        if rich is not None:
            rich = RichText(f"{rich}<br>{escape(links)}")
    content = _body(text, rich, event.kind)
    if item.thread:
        content["m.relates_to"] = thread_relation(item.thread, item.reply_to)
    elif item.reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": item.reply_to}}
    return SendWire(event_type="m.room.message", content={**content, **_marker(event)})


def _edit_wire(item: Outgoing, event: Edit) -> SendWire:
    new = _body(event.text, event.rich, MessageKind.TEXT)
    if item.target is None:  # the original never reached this room: say it anew
        return SendWire(event_type="m.room.message", content={**new, **_marker(event)})
    content = {
        **new,
        "body": f"* {event.text}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": item.target},
    }
    if "formatted_body" in new:
        content["formatted_body"] = f"* {new['formatted_body']}"
    return SendWire(event_type="m.room.message", content={**content, **_marker(event)})


def to_wire(item: Outgoing) -> Wire:  # noqa: PLR0911 - one return per event kind
    """The request that delivers one rendered item (attachments as links; the adapter
    replaces them with uploaded media when configured to)."""
    event = item.event
    match event:
        case Message():
            return _message_wire(item, event)
        case Edit():
            return _edit_wire(item, event)
        case Delete():
            if item.target is None:
                raise ValueError("a delete needs the target's Matrix event id")
            return RedactWire(target=item.target)
        case Topic():
            return _notice(event, f"{event.origin.sender.name} set the topic: {event.text}")
        case Join():
            return _notice(event, f"{event.origin.sender.name} joined")
        case Leave():
            return _notice(event, f"{event.origin.sender.name} left")
        case Presence():
            return _notice(event, f"{event.origin.sender.name} is now {event.state.value}")
        case Reaction():
            if item.target is None or event.removed:
                # A removal redacts the annotation the relay posted, which only the
                # adapter's state knows (`reactions`).
                raise ValueError("a reaction needs its target, a removal its annotation")
            content = {**annotation_content(item.target, event.key), **_marker(event)}
            return SendWire(event_type="m.reaction", content=content)
        case NickChange() | Kick():
            raise ValueError("membership is relayed as notices")
        case _:
            assert_never(event)
