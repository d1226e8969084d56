"""Private messages to the relay: which stanzas are one, and where the answer goes.

People write to the relay account as to anyone: a `chat` (or `normal`) message to its JID,
or a private message through a room it is in (XEP-0045 §7.5: type `chat` from the
occupant JID `room@service/nick`; in component mode, either addressed to the component's
own JID). The core archives such a message and answers its sender once (see the core's
`direct`); the adapter names the conversation by the address an answer must go to: the
sender's full JID (the client they wrote from) or the occupant JID (a person known in
that room only by their nick).

Not private messages, and never answered: invitations (XEP-0045 mediated, XEP-0249
direct), what a room says itself (configuration changes, from its bare JID), messages
from a server or component (no local part: announcements), the account's own other
clients, headlines and errors.

A private chat has no room to assign ids: the id a message is known by is the one the
relay's own server gave it when it archived it (XEP-0359 `stanza-id` by the relay's
JID, from XEP-0313 on the account), else the sender's own id; either is prefixed with
the conversation, so one sender's ids can never make another sender's message look like
one already seen. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imbridge.events import Recipient

from .stanzas import WireMessage

PRIVATE_TYPES = frozenset({"chat", "normal"})  # RFC 6121 §5.2.2; `normal` is the default


@dataclass(frozen=True, slots=True, kw_only=True)
class Private:
    """Where a private message came from, as the core and the adapter need it."""

    room: str
    """The address the answer goes to: the sender's full JID, or the occupant JID."""
    name: str
    """Who wrote, as the archive shows them: the bare JID, or the nick in the room."""
    conversation: str
    """The key of this conversation in the adapter's state (aliases, reaction sets):
    the sender's bare JID, or the occupant JID; stable across their clients."""
    remote_id: str | None
    person: Recipient | None = None
    """Whom it is for when written to a puppet JID (component mode): the person on the
    other network that puppet stands for; None for the relay itself."""


def private_message(wire: WireMessage, *, own: str, rooms: Mapping[str, str]) -> Private | None:
    """The place of a private message to the relay, or None if `wire` is not one.

    `own` is the relay's bare JID (or the component's domain), `rooms` maps each room the
    relay is in to its nick there."""
    if wire.type not in PRIVATE_TYPES or wire.invitation:
        return None
    if wire.room in rooms or wire.muc_user:
        if not wire.nick or wire.nick == rooms.get(wire.room):
            return None  # the room itself (status codes, config changes), or ourselves
        occupant = f"{wire.room}/{wire.nick}"
        return Private(
            room=occupant,
            name=wire.nick,
            conversation=occupant,
            remote_id=_remote_id(occupant, wire),
        )
    local, at, _domain = wire.room.partition("@")
    if not at or not local or wire.room == own:
        return None  # a server or component speaking, or the relay's own account
    return Private(
        room=f"{wire.room}/{wire.nick}" if wire.nick else wire.room,
        name=wire.room,
        conversation=wire.room,
        remote_id=_remote_id(wire.room, wire),
    )


def _remote_id(conversation: str, wire: WireMessage) -> str | None:
    mid = wire.account_stanza_id or wire.origin_id or wire.id
    return f"{conversation}:{mid}" if mid else None
