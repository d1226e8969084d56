"""The Matrix adapter: the adapter contract over one Matrix account (matrix-nio).

This class only answers the contract (start, join, send, aclose) and names what Matrix
can do; the work is in its parts, each with one concern and each given its
collaborators: `session` logs in and holds the client, `rooms` joins and knows which
room is which, `receive` runs the sync loop and hands events to the core, `send` turns
items into requests, `media` reads the homeserver's media for signed links and the
archive. Translation lives in `proto` (pure). The adapter owns the sync task in one
`TaskTree` and closes it in `aclose`.

Two modes (docs/matrix.md). *client*: one relay account that syncs. *appservice*: the
homeserver pushes events (`appservice`, served through the daemon's listener as an
`HttpService`) instead of the sync loop, and remote senders speak as ghosts (`ghosts`),
so the core leaves out the nick prefix (`speaks_as_sender`).

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

import asyncio
import re
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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

from . import registration
from .config import MatrixConfig
from .ghosts import Ghosts
from .media import MatrixMedia
from .portals import Portals
from .proto.ghostnames import is_ghost, server_of
from .receive import Receiver
from .rooms import NETWORK_ERRORS, Rooms
from .send import Transmitter
from .session import Session

if TYPE_CHECKING:
    # aiohttp's server side (about 2 MiB resident) is loaded by the appservice API and
    # the daemon's listener, never by a client-mode network on its own.
    from aiohttp import web

    from .appservice import AppserviceApi

log = structlog.get_logger("imbridge.adapters.matrix")

MATRIX_USER = re.compile(r"@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:[0-9]{1,5})?")
"""A user id as the spec allows it (historical upper-case localparts aside)."""
PINGS = 5
PING_AGAIN = 2.0
"""Seconds between pings until the first transaction arrives (Synapse's first retry of
a failed push comes after 2 s)."""


class MatrixAdapter:
    """One Matrix account, relaying the rooms the core joins."""

    config_model: ClassVar[type[NetworkConfig]] = MatrixConfig
    # Stock Synapse allows 0.2 msg/s (burst 10) per user; homeservers that host a relay
    # usually exempt it. 429s are honoured either way (RetryableSendError.retry_after).
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=10.0, burst=50)
    links_media: ClassVar[bool] = True  # built with `media_links=` (see registry.build)
    uses_state_dir: ClassVar[bool] = True  # appservice tokens live there (`registration`)
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
        state_dir: Path | None = None,
    ) -> None:
        if not isinstance(config, MatrixConfig):
            raise TypeError(f"expected MatrixConfig, got {type(config).__name__}")
        self.name = name
        self.config = config
        self._log = log.bind(network=name)
        self._api: AppserviceApi | None = None
        self._ghosts: Ghosts | None = None
        as_token: str | None = None
        if config.mode == "appservice":
            as_token, hs_token = registration.tokens(name, config, state_dir or Path())
            self.capabilities = replace(self.capabilities, speaks_as_sender=True, direct_sends=True)
        self._session = Session(name, config, cursors, self._log, as_token=as_token)
        self._rooms = Rooms(name, config, cursors, session=self._session, log=self._log)
        self._media = MatrixMedia(
            name, config, session=self._session, links=media_links, log=self._log
        )
        self._ghosts = self._ghost_keeper(config, as_token)
        self._portals = (
            Portals(cursors, self._ghosts, log=self._log) if self._ghosts is not None else None
        )
        self._receiver = Receiver(
            name,
            config,
            cursors,
            session=self._session,
            rooms=self._rooms,
            media=self._media,
            log=self._log,
            portals=self._portals,
        )
        if as_token is not None:
            from .appservice import AppserviceApi  # noqa: PLC0415 - aiohttp.web, see above

            self._api = AppserviceApi(
                hs_token,
                cursors,
                apply=self._apply_transaction,
                knows_user=self._knows_user,
                log=self._log,
            )
        self._transmitter = Transmitter(
            name,
            config,
            session=self._session,
            rooms=self._rooms,
            cursors=cursors,
            log=self._log,
            ghosts=self._ghosts,
            portals=self._portals,
        )
        self._tasks: TaskTree | None = None

    def _ghost_keeper(self, config: MatrixConfig, as_token: str | None) -> Ghosts | None:
        """The ghosts remote senders speak as, in appservice mode only."""
        if as_token is None:
            return None
        return Ghosts(
            homeserver=config.homeserver,
            as_token=as_token,
            bot=config.user_id,
            server=server_of(config.user_id),
            prefix=config.appservice.ghost_prefix,
            timeout=config.request_timeout,
            log=self._log,
        )

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
        if self._api is not None:
            await self._api.load()
            resumed = True
        else:
            resumed = await self._receiver.resume()
        await self._media.check_links()
        self._session.online()
        self._tasks = await TaskTree(f"matrix:{self.name}").__aenter__()
        if self._api is not None:
            self._api.open = True
            self._tasks.spawn(self._ping(), name=f"matrix-ping-{self.name}", network=self.name)
        else:
            self._tasks.spawn(
                self._receiver.run(), name=f"matrix-sync-{self.name}", network=self.name
            )
        self._log.info("connected", user_id=self.identity, resumed=resumed, mode=self.config.mode)

    async def join(self, room: str) -> None:
        await self._rooms.join(room)

    async def leave(self, room: str) -> None:
        await self._rooms.leave(room)

    async def send(self, item: Outgoing) -> RemoteId:
        return await self._transmitter.send(item)

    def address(self, word: str) -> str | None:
        """A Matrix user id names a person here (`DirectAddresses`), in appservice mode,
        where a ghost can open a portal with them; never one of our own ghosts."""
        if self._portals is None or MATRIX_USER.fullmatch(word) is None:
            return None
        return None if self._is_ghost(word) or word == self.identity else word

    async def aclose(self) -> None:
        if self._api is not None:
            self._api.open = False
        self._session.closing()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.aclose()
        await self._receiver.aclose()
        await self._media.aclose()
        if self._ghosts is not None:
            await self._ghosts.aclose()
        await self._session.aclose()

    # --- appservice mode ------------------------------------------------------------------

    @classmethod
    def registration(
        cls, name: str, config: NetworkConfig, *, state_dir: Path, listen: str | None
    ) -> dict[str, Any]:
        """The registration `imbridge matrix registration` prints (see `registration`)."""
        if not isinstance(config, MatrixConfig):
            raise TypeError(f"expected MatrixConfig, got {type(config).__name__}")
        return registration.registration(name, config, state_dir=state_dir, listen=listen)

    async def handle_http(self, request: web.Request, path: str) -> web.StreamResponse:
        """The appservice API (`HttpService`); 404 in client mode."""
        if self._api is None:
            from aiohttp import web  # noqa: PLC0415 - loaded by the listener calling this

            raise web.HTTPNotFound(text="not an appservice\n")
        return await self._api.handle(request, path)

    async def _apply_transaction(self, events: list[dict[str, Any]]) -> None:
        await self._receiver.apply_pushed(events, self._is_ghost)

    def _is_ghost(self, user_id: str) -> bool:
        prefix = self.config.appservice.ghost_prefix
        return is_ghost(user_id, prefix, server_of(self.config.user_id))

    async def _knows_user(self, user_id: str) -> bool:
        """A ghost id the homeserver asks about is ours: registered on the spot."""
        if self._ghosts is None or not self._is_ghost(user_id):
            return False
        try:
            await self._ghosts.register(user_id[1:].split(":", 1)[0])
        except AdapterError as exc:
            self._log.warning("ghost_register_failed", user_id=user_id, error=str(exc))
            return False
        return True

    async def _ping(self) -> None:
        """Asks the homeserver to ping us: it then sends at once the transactions it
        kept while the bridge was down, instead of at the end of its backoff (up to
        eight minutes in Synapse). A push that failed just before the bridge listened
        may only be noticed after the first ping, so the ping is repeated until a
        transaction has come through, a few times at most."""
        assert self._ghosts is not None  # noqa: S101 - spawned in appservice mode only
        assert self._api is not None  # noqa: S101 - likewise
        app_id = registration.appservice_id(self.name, self.config)
        delay, pinged = 0.5, 0
        while not self._session.closed and pinged < PINGS and not self._api.received:
            try:
                async with asyncio.timeout(self.config.request_timeout):
                    status = await self._ghosts.ping(app_id)
            except (*NETWORK_ERRORS,) as exc:
                status = 0
                self._log.debug("appservice_ping_failed", error=repr(exc))
            if status == 200:
                if not pinged:
                    self._log.info("appservice_pinged")
                pinged += 1
                delay = PING_AGAIN
            elif status in (400, 404, 405):  # before Matrix 1.7: its own backoff it is
                self._log.info("appservice_ping_unsupported", status=status)
                return
            else:
                delay = min(delay * 2, 30.0)
            await asyncio.sleep(delay)

    # --- media for the bridge's links and the archive (`AttachmentSource`) -------------

    def open_attachment(self, attachment: Attachment) -> AbstractAsyncContextManager[Media] | None:
        return self._media.open_attachment(attachment)

    def open_media(self, ref: str) -> AbstractAsyncContextManager[Media]:
        return self._media.open_media(ref)
