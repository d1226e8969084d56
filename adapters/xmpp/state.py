"""What the XMPP adapter's parts share: one session's state, and the hooks between them.

The adapter is split by concern into `session` (login, reconnect, joins, keep-alive),
`inbound` (stanzas in, catch-up, cursors) and `outbound` (sends in turn order, delivery
tracking, uploads), combined by the facade in `adapter`. They act on one connection and
one set of rooms, so that state lives here, in one place, instead of being passed between
them; component mode (`component`) subclasses the facade and overrides the hooks below.
Every task a part starts goes through `_spawn`, so `aclose` can end them all; state writes
go through `_writes` (`writes`), which owns its one writer task.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from slixmpp import BaseXMPP

from imbridge.adapter import Cursors, EventSink, NetworkConfig, Outgoing
from imbridge.events import Message
from imbridge.intake import Intake

from .config import XmppConfig
from .delivery import Delivery
from .media import Uploader
from .reactions import ReactionSets
from .rooms import Room
from .stanzas import WireMessage, split_jid
from .uploads import discovery_domain
from .writes import CoalescedWrites

log = structlog.get_logger("imbridge.adapters.xmpp")


@dataclass(slots=True)
class CatchUp:
    """Archive results for one room, handled in the inbound consumer's order."""

    room: Room
    messages: list[WireMessage]
    done: asyncio.Future[None]


Work = tuple[str, ET.Element] | CatchUp
"""One item of the inbound queue: a live stanza ("message" or "presence"), or a catch-up."""


class XmppState:
    """The state of one adapter instance, shared by its session, inbound and outbound
    parts."""

    def __init__(self, name: str, config: NetworkConfig, cursors: Cursors) -> None:
        if not isinstance(config, XmppConfig):
            raise TypeError("XmppAdapter needs an XmppConfig")
        self.name = name
        self.config = config
        self._cursors = cursors
        self._identity = (config.jid or config.component or name).lower()
        self._sink: EventSink | None = None
        self._intake: Intake  # made by `start`, with the sink
        self._client: BaseXMPP | None = None
        self._rooms: dict[str, Room] = {}
        self._queue: asyncio.Queue[Work] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivery = Delivery()
        self._looked_back: set[str] = set()
        """Rooms whose archive this process has read back past its cursor once."""
        self._sent_ids: OrderedDict[str, str] = OrderedDict()  # our stanza-id -> origin-id
        self._aliases: OrderedDict[str, str] = OrderedDict()  # room+their id -> stanza-id
        self._ready = asyncio.Event()
        self._login_settled = asyncio.Event()  # logged in and joined, or refused
        self._topic_oids: dict[str, list[str]] = {}  # room -> subject changes in flight
        self._reaction_sets: OrderedDict[str, ReactionSets] = OrderedDict()
        """Reaction sets of recent conversations, as stored (`reactions`)."""
        self._own_jid = split_jid(self._identity)[0]  # private messages from it are ours
        self._login_failed: str | None = None
        self._session_alive = False
        self._generation = 0
        self._session_task: asyncio.Task[None] | None = None
        self._closing = False
        self._log = log.bind(network=name)
        self._writes = CoalescedWrites(cursors, log=self._log)
        """Cursor, alias and origin-id writes; read what is stored through it too."""
        self._uploads = Uploader(config, log=self._log)
        self._uploaded: OrderedDict[str, Message] = OrderedDict()  # origin-id -> relinked
        self._upload_domain = discovery_domain(
            (config.jid or "").partition("@")[2].lower(), component=False
        )
        self._upload_sender: str | None = None  # the session's own JID: no `from` needed

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and not self._closing

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- across parts: defined by `session` ----------------------------------------------

    async def _rejoin(self, room: Room) -> None:
        """Joins `room` again after the relay lost its place there."""
        raise NotImplementedError

    # -- hooks for component mode (see `component`) --------------------------------------

    def _speaker(self, item: Outgoing) -> str | None:
        """The JID an item is sent from; None: the session's own."""
        return None

    def _speaks_for(self, room: Room, nick: str, real_jid: str | None) -> bool:
        """Whether occupant `nick` is this adapter's own besides its relay occupant: its
        messages then only confirm deliveries, and its presence is no Join or Leave."""
        return False
