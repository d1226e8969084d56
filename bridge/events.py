"""The canonical event model every adapter translates to and from.

Events are immutable values; an event that exists is valid (`__post_init__` checks the
invariants). No field ever holds a protocol object, so the core, the archive and the outbox
can store, compare and replay them without knowing where they came from.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NewType

EventId = NewType("EventId", str)
RemoteId = NewType("RemoteId", str)
RichText = NewType("RichText", str)
"""The neutral formatted form: an HTML subset held to `richtext.ALLOWED_TAGS`."""


def new_event_id() -> EventId:
    """A fresh, globally unique event id: 48 bits of milliseconds, then 80 random bits.

    Time first, so ids sort by creation: every table and index keyed by event id then
    grows at its end, and a commit rewrites a few pages instead of one page per event
    scattered over the whole index. The random part keeps two bridges from colliding; it
    comes from the stdlib generator (seeded from the OS at start) rather than
    `os.urandom` per id, which dominated the relay path's cost: ids need to be unique,
    not secret.
    """
    return EventId(f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class MessageKind(StrEnum):
    TEXT = "text"
    EMOTE = "emote"
    NOTICE = "notice"


class PresenceState(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sender:
    """Who spoke: `id` is stable on its network (Matrix user id, XMPP JID or occupant, IRC
    services account, else nick); `name` is what people see.

    `authenticated` is False where the network vouches for no account behind `id`: an
    IRC nick without a services account, which anyone can take. Policy can require it
    (`from: {authenticated: true}`) and the archive records its absence."""

    id: str
    name: str
    authenticated: bool = True

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("sender id must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Where an event came from.

    `relayed` is set by an adapter when the wire event carries a relay marker (its own or
    another bridge's): such an event is never relayed again, which is what keeps two
    bridges sharing two rooms from looping.

    `direct` is set by an adapter for a private message to the relay account itself (an
    IRC PRIVMSG to its nick, an XMPP chat message to its JID, a Matrix direct-message
    room); `room` is then the address a reply goes to (the nick, the JID, the DM room).
    Such a message belongs to no gateway: the core archives it and never relays it.
    """

    network: str
    room: str
    sender: Sender
    remote_id: RemoteId | None = None
    timestamp: datetime = field(default_factory=utcnow)
    relayed: bool = False
    direct: bool = False
    recipient: Recipient | None = None
    """With `direct`: the person on another network the private message is for (a
    portal room's ghost, a puppet JID, an address the sender named to the relay). The
    core sends it to them alone (`Capabilities.direct_sends`); None for a message to the
    relay account itself, which goes nowhere (`imbridge.direct`)."""

    def __post_init__(self) -> None:
        if self.recipient is not None and not self.direct:
            raise ValueError("only a direct message has a recipient")
        if not self.network or not self.room:
            raise ValueError("origin needs a network and a room")
        if self.timestamp.tzinfo is None:
            raise ValueError("origin timestamp must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    url: str
    name: str = ""
    mimetype: str = "application/octet-stream"
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("attachment needs a url")
        if self.size is not None and self.size < 0:
            raise ValueError("attachment size must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    id: EventId
    origin: Origin
    text: str
    rich: RichText | None = None
    kind: MessageKind = MessageKind.TEXT
    reply_to: EventId | None = None
    attachments: tuple[Attachment, ...] = ()
    native_type: str = ""
    """What the network sent, when the message only stands in for it by its text fallback
    (a Matrix sticker, poll or location: `m.sticker`, `m.poll.start`, ...); empty for an
    ordinary message. Kept so the archive says what was really posted."""
    archive_only: bool = False
    """Kept in the archive, shown nowhere: what has no text worth relaying (a poll vote
    is answer ids only). `render` gives nothing for it."""
    mentions: tuple[Mention, ...] = ()
    """Whom the sender meant to ping, as their network marked it (a Matrix pill): each
    destination turns them into what pings there (a nick, a pill, a XEP-0372 reference)."""
    thread: EventId | None = None
    """The root of the thread this message belongs to (Matrix `m.thread`, XMPP
    `<thread>`); None outside threads."""
    body_start: int = 0
    """Where the sender's own words begin in `text`: render puts the sender prefix (and a
    quote) before them, and a destination looks for names to ping only from here, so a
    relayed sender's name never pings anyone."""

    def __post_init__(self) -> None:
        if not self.text and not self.attachments:
            raise ValueError("a message needs text or an attachment")
        _fit_mentions(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Edit:
    """A correction of an earlier message (`target`), carrying its full new text."""

    id: EventId
    origin: Origin
    target: EventId
    text: str
    rich: RichText | None = None
    mentions: tuple[Mention, ...] = ()
    """As on `Message`, for the new text."""
    body_start: int = 0
    """As on `Message`."""
    previous: str = ""
    """What the target read before this edit, as its destination last showed it: set by
    `render` on the copy for a destination that shows edits as correction lines, which
    says only what changed (`render.as_correction`); empty where it is not known."""

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("an edit needs text")
        _fit_mentions(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    id: EventId
    origin: Origin
    target: EventId


@dataclass(frozen=True, slots=True, kw_only=True)
class Join:
    id: EventId
    origin: Origin


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave:
    id: EventId
    origin: Origin
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic:
    id: EventId
    origin: Origin
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Presence:
    id: EventId
    origin: Origin
    state: PresenceState
    status: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaction:
    """Someone reacted to (or took back a reaction to) an earlier message, `target`.

    `key` is what they reacted with: an emoji on most networks, any short text on Matrix.
    A removal names the key it removes, so the archive shows which reaction went away
    without looking anything up. Relayed as each destination can show it (see render).
    """

    id: EventId
    origin: Origin
    target: EventId
    key: str
    removed: bool = False
    excerpt: str = ""
    """The start of the target's text as the destination may show it (set by `render`),
    for a destination that shows a reaction as a line: `reacted 👍 to "…"`."""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a reaction needs a key")


@dataclass(frozen=True, slots=True, kw_only=True)
class NickChange:
    """A member of the room now goes by another name (IRC NICK, XMPP MUC status 303):
    `origin.sender` is who they were, `new_name` what they are called now."""

    id: EventId
    origin: Origin
    new_name: str

    def __post_init__(self) -> None:
        if not self.new_name:
            raise ValueError("a nick change needs the new name")


@dataclass(frozen=True, slots=True, kw_only=True)
class Kick:
    """`origin.sender` was removed from the room by someone else (IRC KICK, XMPP status
    307, a Matrix leave sent by another user); `by` is that someone's name, if known."""

    id: EventId
    origin: Origin
    by: str = ""
    reason: str = ""


Event = Message | Edit | Delete | Join | Leave | Topic | Presence | Reaction | NickChange | Kick
"""Closed: handlers `match` on it and end in `assert_never`."""

MEMBERSHIP_EVENTS = (Join, Leave, NickChange, Kick)
"""Who is in a room: archived always, relayed as debounced notices where a gateway has
`relay_membership` (see `membership`)."""

TEXT_EVENTS = (Message, Edit, Topic)
"""Events whose text crosses the gateway (and so meets policy and the archive's search)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mention:
    """A person the sender meant to ping: `user` is their id on `network` (a Matrix user
    id, an occupant JID, a nick), `name` how the text shows them, `text[start:end]`.

    The span lets a destination put its own ping markup exactly where the name stands
    (a pill around it on Matrix, a XEP-0372 `begin`/`end`), or swap the display name for
    the nick that pings on IRC."""

    network: str
    user: str
    name: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.user:
            raise ValueError("a mention needs a user")
        if not 0 <= self.start < self.end:
            raise ValueError("a mention needs a non-empty span")


def _fit_mentions(event: Message | Edit) -> None:
    """Keeps only the mentions whose span still shows their name in the text, and
    `body_start` within it: policy and hooks rewrite text (a redaction, a hook's verdict)
    without knowing about spans, and a mention of words no longer there means nothing."""
    if event.body_start < 0:
        raise ValueError("body_start must not be negative")
    text = event.text
    if event.body_start > len(text):
        object.__setattr__(event, "body_start", len(text))  # frozen: set once, at birth
    kept = tuple(m for m in event.mentions if text[m.start : m.end] == m.name)
    if len(kept) != len(event.mentions):
        object.__setattr__(event, "mentions", kept)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """One person on one network, as a direct message's address: `user` is their id there
    (a Matrix user id, a bare JID, an IRC nick), which is where the adapter sends it."""

    network: str
    user: str

    def __post_init__(self) -> None:
        if not self.network or not self.user:
            raise ValueError("a recipient needs a network and a user")
