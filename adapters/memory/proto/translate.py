"""Posts ⇄ core events, as pure functions: what an adapter's translate.py holds.

`to_core(post, ctx)` builds the event a post stands for; the ids it needs (the new
event's, and the core ids of the post it edits, deletes, reacts or replies to) come in
its `Context`, looked up by the receiver, so nothing here touches a database or makes an
id. `to_wire(item)` is the post that delivers one rendered item. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from imbridge.adapter import Outgoing
from imbridge.adapters.memory.proto.wire import Post
from imbridge.events import (
    Delete,
    Edit,
    Event,
    EventId,
    Join,
    Kick,
    Leave,
    Message,
    NickChange,
    Origin,
    Reaction,
    RemoteId,
    Sender,
)
from imbridge.sanitize import clean_nick, clean_text


class NotSendable(ValueError):
    """An event the memory hub cannot carry: permanent, never retried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What translating a post needs besides the post."""

    network: str
    identity: str
    """The relay's nick: a post addressed to it is a private message."""
    event_id: EventId
    target: EventId | None = None
    """The core id of the post an edit, delete or reaction names, if the core knows it."""
    reply_to: EventId | None = None


def to_core(post: Post, ctx: Context) -> Event | None:
    """The event a post stands for; None for an edit, delete or reaction of a post the
    core never saw (there is nothing to name elsewhere)."""
    direct = post.room == ctx.identity
    origin = Origin(
        network=ctx.network,
        room=post.sender if direct else post.room,
        sender=Sender(id=post.sender, name=clean_nick(post.sender)),
        remote_id=post.remote_id,
        relayed=post.relayed,
        direct=direct,
    )
    if post.kind in MEMBERSHIP_KINDS:
        return _membership(post, ctx, origin)
    if post.kind != "message":  # an edit, delete or reaction: its target must be known
        target = ctx.target
        if target is None:
            return None
        if post.kind == "edit":
            return Edit(id=ctx.event_id, origin=origin, target=target,
                        text=clean_text(post.text))  # fmt: skip
        if post.kind == "delete":
            return Delete(id=ctx.event_id, origin=origin, target=target)
        return Reaction(id=ctx.event_id, origin=origin, target=target,
                        key=post.text or "?", removed=post.kind == "unreact")  # fmt: skip
    return Message(id=ctx.event_id, origin=origin, text=clean_text(post.text),
                   reply_to=ctx.reply_to)  # fmt: skip


MEMBERSHIP_KINDS = frozenset({"join", "leave", "nick", "kick"})
"""Posts that say who is in the room: `nick` carries the new name as its text, `kick`
the kicker's."""


def _membership(post: Post, ctx: Context, origin: Origin) -> Event:
    match post.kind:
        case "join":
            return Join(id=ctx.event_id, origin=origin)
        case "nick":
            return NickChange(id=ctx.event_id, origin=origin, new_name=clean_nick(post.text))
        case "kick":
            return Kick(id=ctx.event_id, origin=origin, by=clean_nick(post.text))
        case _:
            return Leave(id=ctx.event_id, origin=origin, reason=clean_text(post.text))


def feed_to_core(number: int, text: str, *, network: str, room: str, event_id: EventId) -> Message:
    """Line `number` of a feed file, as a message from "feeder"."""
    origin = Origin(
        network=network,
        room=room,
        sender=Sender(id="feeder", name="feeder"),
        remote_id=RemoteId(f"feed{number}"),
    )
    return Message(id=event_id, origin=origin, text=text)


@dataclass(frozen=True, slots=True, kw_only=True)
class PostWire:
    """The post to make: the hub numbers it when posted."""

    room: str
    text: str
    kind: str = "message"
    target: RemoteId | None = None
    reply_to: RemoteId | None = None


def to_wire(item: Outgoing) -> PostWire:
    """The post that delivers `item`; NotSendable for what the hub cannot carry."""
    event = item.event
    if isinstance(event, Edit):
        return PostWire(room=item.room, text=event.text, kind="edit", target=item.target)
    if isinstance(event, Delete):
        return PostWire(room=item.room, text="", kind="delete", target=item.target)
    if isinstance(event, Message):
        return PostWire(room=item.room, text=event.text, reply_to=item.reply_to)
    if isinstance(event, Reaction):
        kind = "unreact" if event.removed else "reaction"
        return PostWire(room=item.room, text=event.key, kind=kind, target=item.target)
    raise NotSendable(f"cannot send {type(event).__name__}")
