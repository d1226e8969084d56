"""The XMPP adapter in client mode: the adapter contract over one slixmpp session.

This class only answers the contract (start, join, send, aclose) and names what the
network can do; the work is in its parts, each with one concern: `session` logs in,
reconnects, joins and keeps the stream alive; `inbound` turns stanzas and archive
results into events, in order, storing cursors only behind them; `outbound` writes
items in turn order and waits for the rooms to confirm them. They share one instance's
state (`state`). The adapter owns every task its parts start and cancels them in
`aclose`. Component mode (`component`) is this class with other hooks.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from imbridge.adapter import Capabilities, EventSink, NetworkConfig, Outgoing, RateLimit
from imbridge.errors import AdapterError
from imbridge.events import RemoteId
from imbridge.intake import Intake

from .config import XmppConfig
from .inbound import Receiver
from .outbound import Transmitter
from .rooms import Room
from .session import LOGIN_TIMEOUT, Session
from .xmlsafe import xml_nick


class XmppAdapter(Session, Receiver, Transmitter):
    """Relays through MUC rooms as one client account (XEP-0045)."""

    config_model: ClassVar[type[NetworkConfig]] = XmppConfig
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=50, burst=100)
    capabilities = Capabilities(
        edits=True,
        deletes=True,
        replies=True,
        attachments=True,
        formatting="xhtml",
        max_text_bytes=32_000,  # well under Prosody's 256 KiB stanza limit
        # One ordered stream, and origin-ids make a resend harmless: several messages may
        # wait for their reflection at once instead of one per round trip.
        send_window=16,
    )

    async def start(self, sink: EventSink) -> None:
        # The daemon retries a failed start on the same instance, after `aclose`.
        self._sink = sink
        self._intake = Intake(sink)
        self._closing = False
        self._login_failed = None
        self._login_settled.clear()
        self._ready.clear()
        self._queue = asyncio.Queue()  # nothing from a previous connection is replayed
        self._client = self._make_client()
        self._spawn(self._consume())
        self._spawn(self._ping_loop())
        self._connect()
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                await self._login_settled.wait()
        except TimeoutError:
            await self.aclose()
            raise AdapterError(
                f"{self.name}: no XMPP session within {LOGIN_TIMEOUT:.0f}s"
            ) from None
        if (reason := self._refusal()) is not None:
            await self.aclose()
            raise AdapterError(f"{self.name}: login failed: {reason}")

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
        if self._session_alive:
            await self._join(state)

    async def send(self, item: Outgoing) -> RemoteId:
        return await self._send(item)

    async def aclose(self) -> None:
        self._closing = True
        self._ready.clear()
        self._session_alive = False
        await self._close_stream()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._writes.aclose()  # after the inbound consumer queued its last cursors
        await self._uploads.aclose()
        self._delivery.release_older_than(self._generation + 1)
