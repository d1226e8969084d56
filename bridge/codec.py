"""Events as JSON, for the outbox and the message store.

A closed, explicit mapping rather than pickle: the state database must stay readable by
later versions and by people with sqlite3, and must never execute what it stores.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any, assert_never

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
    PresenceState,
    Reaction,
    Recipient,
    RemoteId,
    RichText,
    Sender,
    Topic,
)

_NAMES: dict[type, str] = {
    Message: "message",
    Edit: "edit",
    Delete: "delete",
    Join: "join",
    Leave: "leave",
    Topic: "topic",
    Presence: "presence",
    Reaction: "reaction",
    NickChange: "nick",
    Kick: "kick",
}
_CLASSES = {v: k for k, v in _NAMES.items()}
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in _NAMES}
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_origin(o: Origin) -> dict[str, Any]:
    out: dict[str, Any] = {
        "network": o.network,
        "room": o.room,
        "sender": o.sender.id,
        "name": o.sender.name,
        "remote_id": o.remote_id,
        "ts": o.timestamp.isoformat(),
        "relayed": o.relayed,
        "direct": o.direct,
    }
    if o.recipient is not None:  # absent for every event but a direct message to someone
        out["to"] = {"network": o.recipient.network, "user": o.recipient.user}
    if not o.sender.authenticated:  # absent means authenticated: older records read alike
        out["authenticated"] = False
    return out


def decode_origin(d: dict[str, Any]) -> Origin:
    rid = d.get("remote_id")
    to = d.get("to")
    return Origin(
        network=d["network"],
        room=d["room"],
        sender=Sender(
            id=d["sender"], name=d["name"], authenticated=bool(d.get("authenticated", True))
        ),
        remote_id=RemoteId(rid) if rid is not None else None,
        timestamp=datetime.fromisoformat(d["ts"]),
        relayed=bool(d.get("relayed", False)),
        direct=bool(d.get("direct", False)),
        recipient=Recipient(network=to["network"], user=to["user"]) if to else None,
    )


def encode_mention(m: Mention) -> dict[str, Any]:
    return {"network": m.network, "user": m.user, "name": m.name, "start": m.start,
            "end": m.end}  # fmt: skip


def decode_mentions(items: Any) -> tuple[Mention, ...]:
    return tuple(Mention(**m) for m in items or ())


def to_dict(event: Event) -> dict[str, Any]:
    cls = type(event)
    out: dict[str, Any] = {"type": _NAMES[cls]}
    for name in _FIELDS[cls]:
        value = getattr(event, name)
        if name == "excerpt" and not value:
            continue  # only relayed copies carry one: archived reactions read as before
        if name == "origin":
            value = encode_origin(value)
        elif name == "previous" and not value:
            continue  # absent means unknown: records from before it read alike
        elif name == "attachments":
            value = [
                {"url": a.url, "name": a.name, "mimetype": a.mimetype, "size": a.size}
                for a in value
            ]
        elif name == "mentions":
            value = [encode_mention(m) for m in value]
        out[name] = value
    return out


def from_dict(d: dict[str, Any]) -> Event:
    cls = _CLASSES[d["type"]]
    origin = decode_origin(d["origin"])
    eid = EventId(d["id"])
    event: Event
    if cls is Message:
        rich = d.get("rich")
        reply = d.get("reply_to")
        event = Message(
            id=eid,
            origin=origin,
            text=d["text"],
            rich=RichText(rich) if rich is not None else None,
            kind=MessageKind(d.get("kind", "text")),
            reply_to=EventId(reply) if reply else None,
            attachments=tuple(Attachment(**a) for a in d.get("attachments", ())),
            native_type=str(d.get("native_type", "")),
            archive_only=bool(d.get("archive_only", False)),
            mentions=decode_mentions(d.get("mentions")),
            thread=EventId(d["thread"]) if d.get("thread") else None,
            body_start=int(d.get("body_start", 0)),
        )
    elif cls is Edit:
        rich = d.get("rich")
        event = Edit(
            id=eid,
            origin=origin,
            target=EventId(d["target"]),
            text=d["text"],
            rich=RichText(rich) if rich is not None else None,
            mentions=decode_mentions(d.get("mentions")),
            body_start=int(d.get("body_start", 0)),
            previous=str(d.get("previous", "")),
        )
    elif cls is Delete:
        event = Delete(id=eid, origin=origin, target=EventId(d["target"]))
    elif cls is Join:
        event = Join(id=eid, origin=origin)
    elif cls is Leave:
        event = Leave(id=eid, origin=origin, reason=d.get("reason", ""))
    elif cls is Topic:
        event = Topic(id=eid, origin=origin, text=d["text"])
    elif cls is Presence:
        event = Presence(
            id=eid, origin=origin, state=PresenceState(d["state"]), status=d.get("status", "")
        )
    elif cls is Reaction:
        event = Reaction(
            id=eid,
            origin=origin,
            target=EventId(d["target"]),
            key=d["key"],
            removed=bool(d.get("removed", False)),
            excerpt=str(d.get("excerpt", "")),
        )
    elif cls is NickChange:
        event = NickChange(id=eid, origin=origin, new_name=d["new_name"])
    elif cls is Kick:
        event = Kick(id=eid, origin=origin, by=d.get("by", ""), reason=d.get("reason", ""))
    else:  # pragma: no cover - _CLASSES is closed
        raise ValueError(f"unknown event type {d['type']!r}")
    return event


def dumps(event: Event) -> str:
    return _ENCODER.encode(to_dict(event))


def loads(text: str) -> Event:
    return from_dict(json.loads(text))


def kind_name(event: Event) -> str:
    match event:
        case Message() | Edit() | Delete() | Join() | Leave() | Topic() | Presence() | Reaction():
            return _NAMES[type(event)]
        case NickChange() | Kick():
            return _NAMES[type(event)]
        case _:
            assert_never(event)
