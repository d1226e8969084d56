"""The Matrix adapter: the adapter contract over one Matrix account (matrix-nio).

This class only answers the contract (start, join, send, aclose) and names what Matrix
can do; the work is in its parts, each with one concern and each given its
collaborators: `session` logs in and holds the client, `rooms` joins and knows which
room is which, `receive` runs the sync loop and hands events to the core, `send` turns
items into requests, `media` reads the homeserver's media for signed links and the
archive. Translation lives in `proto` (pure). The adapter owns the sync task in one
`TaskTree` and closes it in `aclose`.

Three promises. *No loss, no repeats:* the sync `next_batch` is stored only after the
sink returned for every event of its batch, a gap in a limited timeline is back-filled,
and an event the core already knows (by its Matrix event id) is never handed over twice,
which covers a batch replayed after a crash and Synapse's cached `/sync` answers.
*No history replay:* the first start and every fresh join skip what happened before the
bridge arrived. *Nothing dropped silently:* `send` returns the event id or raises;
every send carries the outbox's stable txn id, so a retry after a crash is deduplicated
by the homeserver instead of posted twice.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import ClassVar

import structlog

from imbridge.adapter import (
    Capabilities,
    Cursors,
    EventSink,
    Media,
    NetworkConfig,
    Outgoing,
    RateLimit,
)
from imbridge.errors import AdapterError
from imbridge.events import Attachment, RemoteId
from imbridge.medialinks import MediaLinks
from imbridge.tasks import TaskTree

from .config import MatrixConfig
from .media import MatrixMedia
from .receive import Receiver
from .rooms import Rooms
from .send import Transmitter
from .session import Session

log = structlog.get_logger("imbridge.adapters.matrix")


class MatrixAdapter:
    """One Matrix account, relaying the rooms the core joins."""

    config_model: ClassVar[type[NetworkConfig]] = MatrixConfig
    # Stock Synapse allows 0.2 msg/s (burst 10) per user; homeservers that host a relay
    # usually exempt it. 429s are honoured either way (RetryableSendError.retry_after).
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=10.0, burst=50)
    links_media: ClassVar[bool] = True  # built with `media_links=` (see registry.build)
    capabilities = Capabilities(
        edits=True,
        deletes=True,
        replies=True,
        attachments=True,
        formatting="html",
        max_text_bytes=30_000,  # events are capped at 64 KiB with body and formatted_body
        reactions="native",  # m.reaction on the relayed copy, redacted when taken back
        threads=True,  # m.thread
        pings_by_name=False,  # every relayed message says whom it notifies: m.mentions
    )

    def __init__(
        self,
        name: str,
        config: NetworkConfig,
        cursors: Cursors,
        *,
        media_links: MediaLinks | None = None,
    ) -> None:
        if not isinstance(config, MatrixConfig):
            raise TypeError(f"expected MatrixConfig, got {type(config).__name__}")
        self.name = name
        self.config = config
        self._log = log.bind(network=name)
        self._session = Session(name, config, cursors, self._log)
        self._rooms = Rooms(name, config, cursors, session=self._session, log=self._log)
        self._media = MatrixMedia(
            name, config, session=self._session, links=media_links, log=self._log
        )
        self._receiver = Receiver(
            name,
            config,
            cursors,
            session=self._session,
            rooms=self._rooms,
            media=self._media,
            log=self._log,
        )
        self._transmitter = Transmitter(
            config, session=self._session, rooms=self._rooms, cursors=cursors, log=self._log
        )
        self._tasks: TaskTree | None = None

    @property
    def identity(self) -> str:
        return self._session.identity

    @property
    def connected(self) -> bool:
        return self._session.connected

    async def start(self, sink: EventSink) -> None:
        if self._tasks is not None:
            raise AdapterError(f"{self.name}: already started")
        self._session.reopen()
        self._receiver.attach(sink)
        await self._session.login()
        await self._rooms.load()
        resumed = await self._receiver.resume()
        await self._media.check_links()
        self._session.online()
        self._tasks = await TaskTree(f"matrix:{self.name}").__aenter__()
        self._tasks.spawn(self._receiver.run(), name=f"matrix-sync-{self.name}", network=self.name)
        self._log.info("connected", user_id=self.identity, resumed=resumed)

    async def join(self, room: str) -> None:
        await self._rooms.join(room)

    async def leave(self, room: str) -> None:
        await self._rooms.leave(room)

    async def send(self, item: Outgoing) -> RemoteId:
        return await self._transmitter.send(item)

    async def aclose(self) -> None:
        self._session.closing()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.aclose()
        await self._receiver.aclose()
        await self._media.aclose()
        await self._session.aclose()

    # --- media for the bridge's links and the archive (`AttachmentSource`) -------------

    def open_attachment(self, attachment: Attachment) -> AbstractAsyncContextManager[Media] | None:
        return self._media.open_attachment(attachment)

    def open_media(self, ref: str) -> AbstractAsyncContextManager[Media]:
        return self._media.open_media(ref)
