"""The XMPP adapter: the adapter contract over one XMPP stream, as a client account or
as an external component (XEP-0114), as the section's `mode` says.

This class only answers the contract (start, join, send, aclose) and names what the
network can do; it builds the parts and owns the task tree they start their tasks in.
Each part has one concern and gets its collaborators here: `session` opens the stream,
logs in, reconnects, joins and keeps the stream alive, reading every stanza into its
inbox; `receive` turns what the inbox holds into events, in order, storing cursors only
behind them; `send` writes items in turn order and waits for the rooms to confirm them.
The mode is a part too: `session.ClientLogin` for an account, `component.Component` for
a component, which also gives each relayed sender a voice of its own (`voices`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Coroutine
from typing import Any, ClassVar

import structlog

from imbridge.adapter import (
    Capabilities,
    Cursors,
    EventSink,
    NetworkConfig,
    Outgoing,
    RateLimit,
)
from imbridge.errors import AdapterError
from imbridge.events import RemoteId
from imbridge.tasks import TaskTree

from .component import Component
from .config import XmppConfig
from .delivery import Delivery
from .media import Uploader
from .proto.xmlsafe import xml_nick
from .receive import Receiver
from .rooms import Room
from .send import Sender
from .session import LOGIN_TIMEOUT, ClientLogin, Login, Session
from .voices import OwnVoice, Voices
from .writes import CoalescedWrites

log = structlog.get_logger("imbridge.adapters.xmpp")

BARE_JID = re.compile(r"[^@/\s\"&'<>:]+@[A-Za-z0-9.\-]+")
"""A person's address as people write it: local@domain, no resource."""
CLIENT = Capabilities(
    edits=True,
    deletes=True,
    replies=True,
    attachments=True,
    formatting="xhtml",
    max_text_bytes=32_000,  # well under Prosody's 256 KiB stanza limit
    # One ordered stream, and origin-ids make a resend harmless: several messages may
    # wait for their reflection at once instead of one per round trip. 16 kept Prosody
    # idle a third of a burst (IRC -> XMPP at 0.65x the direct path), 32 gave 0.78x, 64
    # 0.82x (bench/cross.py); after a lost stream the room's archive says which of them
    # arrived, so a wider window resends nothing twice.
    send_window=64,
    reactions="native",  # XEP-0444, the relay's whole set on the relayed copy
    threads=True,  # XEP-0201 <thread>
    direct_sends=True,  # a chat message to a person: from a puppet, or from the relay
)
COMPONENT = dataclasses.replace(CLIENT, send_window=1, speaks_as_sender=True)
"""One send at a time: a new sender's first message waits for its puppet to join, and
later messages of others must not overtake it on the wire. A puppet's nick says who
speaks, so the core sends the text without the sender prefix."""


class XmppAdapter:
    """Relays through MUC rooms (XEP-0045), as one account or one puppet per sender."""

    config_model: ClassVar[type[NetworkConfig]] = XmppConfig
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=50, burst=100)

    def __init__(self, name: str, config: NetworkConfig, cursors: Cursors) -> None:
        if not isinstance(config, XmppConfig):
            raise TypeError("XmppAdapter needs an XmppConfig")
        self.name = name
        self.config = config
        self.identity = (config.jid or config.component or name).lower()
        self.mode = config.mode
        bound = log.bind(network=name)
        self._tasks: TaskTree | None = None
        self._rooms: dict[str, Room] = {}  # written by `join` only
        delivery = Delivery()
        self._writes = CoalescedWrites(cursors, log=bound)
        """Cursor, alias and origin-id writes; read what is stored through it too."""
        self._uploads = Uploader(config, log=bound)
        login: Login
        voices: Voices
        if config.mode == "component":
            component = Component(name, config, rooms=self._rooms, delivery=delivery, log=bound)
            login, voices = component, component
            self.capabilities = COMPONENT
        else:
            login, voices = ClientLogin(name, config, log=bound), OwnVoice()
            self.capabilities = CLIENT
        self._voices = voices
        self._delivery = delivery
        self._session = Session(
            name, config, login=login, rooms=self._rooms, writes=self._writes,
            delivery=delivery, uploads=self._uploads, spawn=self._spawn, log=bound,
        )  # fmt: skip
        self._receiver = Receiver(
            name, config, cursors, identity=self.identity, rooms=self._rooms,
            inbox=self._session.inbox, session=self._session, delivery=delivery,
            writes=self._writes, voices=voices, log=bound,
        )  # fmt: skip
        self._sender = Sender(
            name, config, identity=self.identity, rooms=self._rooms, session=self._session,
            login=login, delivery=delivery, receiver=self._receiver, uploads=self._uploads,
            voices=voices, writes=self._writes,
        )  # fmt: skip

    def address(self, word: str) -> str | None:
        """A bare JID names a person here (`DirectAddresses`): not a room the relay is
        in, nor one of its own puppets."""
        if BARE_JID.fullmatch(word) is None:
            return None
        jid = word.lower()
        if jid in self._rooms or jid.endswith(f"@{self.config.component}"):
            return None
        return jid

    @property
    def connected(self) -> bool:
        return self._session.connected

    async def start(self, sink: EventSink) -> None:
        # The daemon retries a failed start on the same instance, after `aclose`.
        if self._tasks is not None and not self._tasks.closed:
            raise AdapterError(f"{self.name}: already started")
        self._tasks = await TaskTree(f"xmpp:{self.name}").__aenter__()
        self._receiver.open(sink)
        self._session.open()
        self._spawn(self._receiver.run(), "receive")
        self._spawn(self._session.keep_alive(), "keep_alive")
        self._session.connect()
        try:
            refusal = await self._session.settle()
        except TimeoutError:
            await self.aclose()
            raise AdapterError(
                f"{self.name}: no XMPP session within {LOGIN_TIMEOUT:.0f}s"
            ) from None
        if refusal is not None:
            await self.aclose()
            raise AdapterError(f"{self.name}: login failed: {refusal}")

    async def join(self, room: str) -> None:
        jid = room.lower()
        if jid in self._rooms:
            return
        secret = self.config.room_passwords.get(room) or self.config.room_passwords.get(jid)
        state = Room(
            jid=jid,
            wanted_nick=xml_nick(self.config.nick),
            password=secret.get_secret_value() if secret else None,
        )
        self._rooms[jid] = state
        if self._session.alive:
            await self._session.join(state)

    async def leave(self, room: str) -> None:
        state = self._rooms.pop(room.lower(), None)
        if state is None:
            return
        client = self._session.client
        if client is not None and self._session.alive and state.joined:
            self._voices.leave(client, state)
        state.joined = False
        state.set_catching_up(False)  # sends waiting on it fail on the missing room
        log.info("left", network=self.name, room=state.jid)

    async def send(self, item: Outgoing) -> RemoteId:
        return await self._sender.send(item)

    async def aclose(self) -> None:
        client = self._session.client
        if client is not None and self._session.alive and not self._session.closing:
            self._voices.leave_all(client)
        await self._session.close()
        if self._tasks is not None:
            await self._tasks.aclose()
        await self._writes.aclose()  # after the inbound consumer queued its last cursors
        await self._uploads.aclose()
        self._delivery.release_older_than(self._session.generation + 1)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """Starts a part's task in this adapter's tree; once the adapter closes, a task a
        late stream event asks for is not started."""
        tasks = self._tasks
        if tasks is None or tasks.closed:
            coro.close()
            return None
        return tasks.spawn(coro, name=name, network=self.name)
