"""The adapter contract: the whole of what the core asks of a protocol adapter.

An adapter translates between its wire protocol and `events`, and moves bytes; routing,
policy, retries and persistence are the core's. Adapters are found through the
`imbridge.adapters` entry-point group (see `registry`) and built as `cls(name, config,
cursors)`; an adapter whose constructor also takes a `media_links` keyword gets the
daemon's `MediaLinks` there when `bridge.http.public_url` is set (see `MediaSource`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from imbridge.backlog import BacklogLimit
from imbridge.errors import AdapterError
from imbridge.events import Attachment, Event, EventId, RemoteId

if TYPE_CHECKING:
    from aiohttp import web

    from imbridge.medialinks import MediaLinks

__all__ = [
    "Adapter",
    "AdapterFactory",
    "AttachmentSource",
    "Capabilities",
    "Cursors",
    "DirectAddresses",
    "EventSink",
    "HttpService",
    "Media",
    "MediaGone",
    "MediaSource",
    "MediaUnavailable",
    "NetworkConfig",
    "Outgoing",
    "RateLimit",
    "RemoteId",
]

EventSink = Callable[[Event], Awaitable[None]]
"""Awaited by adapters for every incoming event; when it returns, the event is on disk and
the adapter may advance its cursor or acknowledge the server."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What a destination can show; `render` shapes events to fit before they are queued."""

    edits: bool
    deletes: bool
    replies: bool
    attachments: bool
    formatting: Literal["plain", "irc", "xhtml", "html"]
    max_text_bytes: int  # IRC counts bytes, not characters
    send_window: int = 1
    speaks_as_sender: bool = False
    """Each relayed sender speaks under an identity of their own on this network (puppets),
    which already says who it is: `render` then leaves the `nick_format` prefix out."""
    """How many sends to one room may be in flight at once. Above 1 only for adapters
    whose concurrent sends keep their start order on the wire (one ordered stream) and
    whose retries are idempotent; with 1 the outbox waits for each send to finish."""
    reactions: Literal["native", "text", "none"] = "none"
    """How this destination shows reactions. `native`: the adapter is sent every
    `Reaction` (added and removed, its target in this network's ids, or None for a
    message said in that room that the network gave no id) and shows it its own way;
    `text`: `render` turns an added reaction into a one-line notice and drops removals;
    `none`: reactions are archived, not shown here."""
    threads: bool = False
    """The network shows threads (Matrix `m.thread`, XMPP `<thread>`): a threaded message
    keeps its thread; elsewhere `render` names the thread root in a short prefix."""
    pings_by_name: bool = True
    """Clients notify a user whose name stands in a message's text (IRC, XMPP MUC):
    `{nick_noping}` breaks the relayed sender's name up there, and only there. False
    where a message says whom it notifies (Matrix `m.mentions`)."""
    max_lines: int = 0
    """Lines a message may take here before the core sends its first lines and a link to
    its full text instead (when `bridge.http.public_url` is set; `imbridge.textlinks`);
    0 where a message is one unit whatever its length."""
    line_bytes: int = 0
    """Text bytes one of those lines surely carries, so the core can count them."""
    edit_window: float = 0.0
    """Seconds the outbox holds a correction line (a destination without `edits`) so
    quick further edits of the same message become one line; 0 sends each at once."""
    direct_sends: bool = False
    """The adapter delivers a direct message to one person (an `Outgoing` whose event's
    `origin.recipient` is on this network; its `room` is then the recipient's id): a
    portal room, a chat from a puppet, a PRIVMSG naming the sender."""

    def __post_init__(self) -> None:
        if self.max_text_bytes <= 0:
            raise ValueError("max_text_bytes must be positive")
        if self.send_window < 1:
            raise ValueError("send_window must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One event rendered for one room, as the outbox hands it to `Adapter.send`."""

    room: str
    event: Event  # already fits the destination's capabilities
    target: RemoteId | None = None  # an Edit's or Delete's target, in this network's ids
    reply_to: RemoteId | None = None
    txn_id: str  # identical on every retry: the idempotency key where the protocol has one
    thread: RemoteId | None = None  # a threaded message's root, in this network's ids


class RateLimit(BaseModel):
    """A token bucket: `burst` sends at once, then `per_second` on average."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class NetworkConfig(BaseModel):
    """Keys every `networks.<name>` section has; each adapter's model extends it."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: str
    rate_limit: RateLimit | None = None
    """Overrides the adapter's `default_rate_limit` for this network."""
    backlog: BacklogLimit | None = BacklogLimit()
    """What each room may have waiting before a flooding sender's messages are shed
    (`imbridge.shedding`); null: no limit."""
    ignore_users: tuple[str, ...] = ()
    """Shell globs of sender ids never relayed: other relay bots sharing a room."""
    required: bool = True
    """Whether readiness waits for this network."""


class Cursors(Protocol):
    """A network's own slot in the state database: resume points (sync tokens, last
    stanza-id) and the lookup an adapter needs to build Edit/Delete/reply targets."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...

    async def event_id(self, remote_id: RemoteId) -> EventId | None:
        """The event a remote id of this network stands for: a message that came in from
        it, or the relayed copy the bridge posted there. None if never seen."""
        ...


class Adapter(Protocol):
    config_model: ClassVar[type[NetworkConfig]]
    default_rate_limit: ClassVar[RateLimit]
    name: str
    capabilities: Capabilities

    @property
    def identity(self) -> str:
        """The sender id this adapter's own messages carry, so the core drops its echoes."""
        ...

    @property
    def connected(self) -> bool: ...

    async def start(self, sink: EventSink) -> None:
        """Connect and log in; returns once logged in, then reconnects by itself. The
        adapter logs `connected` each time it logs in (the daemon does not)."""
        ...

    async def join(self, room: str) -> None:
        """Enter `room` and stay there across reconnects; logs `joined` each time."""
        ...

    async def leave(self, room: str) -> None:
        """Leave `room` for good (a reload removed it from every gateway): no rejoin on
        reconnect, no more events from it; logs `left`. Safe for a room not joined."""
        ...

    async def send(self, item: Outgoing) -> RemoteId:
        """Deliver one item and return the server's id for it; raise, never drop."""
        ...

    async def aclose(self) -> None:
        """Disconnect; safe to call twice, frees the socket whatever happened before."""
        ...


class AdapterFactory(Protocol):
    config_model: ClassVar[type[NetworkConfig]]
    default_rate_limit: ClassVar[RateLimit]

    def __call__(self, name: str, config: NetworkConfig, cursors: Cursors) -> Adapter: ...


class MediaAdapterFactory(Protocol):
    """An adapter class that links media through the bridge (`MediaSource`); it says so
    with `links_media = True` and is then built with `media_links=`."""

    links_media: ClassVar[bool]

    def __call__(
        self, name: str, config: NetworkConfig, cursors: Cursors, *, media_links: MediaLinks
    ) -> Adapter: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One piece of media being read from its network, for the bridge's media route."""

    mimetype: str
    size: int | None  # as announced by the server; the route still counts what it streams
    chunks: AsyncIterator[bytes]
    max_bytes: int | None = None
    """The adapter's own cap (e.g. its `media_max_bytes`); the route's default if None."""


class MediaGone(AdapterError):
    """The network says the media does not exist (any more): the route answers 404."""


class MediaUnavailable(AdapterError):
    """The network could not be asked or failed to answer: the route answers 502."""


@runtime_checkable
class MediaSource(Protocol):
    """Optional: an adapter whose media needs its credentials (Matrix authenticated media)
    relays links made by the `MediaLinks` it was built with, and serves them here."""

    def open_media(self, ref: str) -> AbstractAsyncContextManager[Media]:
        """Read the media `ref` names (a ref this adapter gave `MediaLinks.link`)."""
        ...


@runtime_checkable
class AttachmentSource(Protocol):
    """Optional: an adapter whose attachments need its credentials to read (Matrix
    authenticated media, or the bridge's own signed links to them) opens them for the
    archive, which keeps their bytes (`imbridge.archive.capture`)."""

    def open_attachment(self, attachment: Attachment) -> AbstractAsyncContextManager[Media] | None:
        """Read an attachment this adapter put in an event; None when its URL is not one
        of this adapter's own, and the archive fetches it as a plain public URL."""
        ...


@runtime_checkable
class HttpService(Protocol):
    """Optional: an adapter whose server pushes to it over HTTP (a Matrix appservice's
    transactions). The daemon's listener hands it every request under
    `/networks/<name>/`, `path` being the rest (`/_matrix/app/v1/ping`); the adapter
    answers, checking the caller's credentials itself. Looked up per request, so an
    adapter rebuilt by a reload or a restart takes over at once."""

    async def handle_http(self, request: web.Request, path: str) -> web.StreamResponse: ...


@runtime_checkable
class DirectAddresses(Protocol):
    """An adapter with `direct_sends` that recognises its network's addresses in what
    people write to a relay (`@someone:example.org`, `someone@xmpp.example`), so a private
    message naming one reaches that person (`imbridge.direct.addressed`)."""

    def address(self, word: str) -> str | None:
        """`word` as a user id of this network, or None when it names no one here."""
        ...
