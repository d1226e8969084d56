"""The Matrix adapter: login, room joins, sending, the sync loop and media links; the
only I/O. This module holds the lifecycle and joins; `sync` receives, `sending` sends,
`proxy` reads media for the bridge's signed links.

Translation lives in `translate` (pure); the adapter moves requests and keeps three
promises. *No loss, no repeats:* the sync `next_batch` is stored only after the sink
returned for every event of its batch, a gap in a limited timeline is back-filled, and
an event the core already knows (by its Matrix event id) is never handed over twice,
which covers a batch replayed after a crash and Synapse's cached `/sync` answers.
*No history replay:* the first start and every fresh join skip what happened before the
bridge arrived. *Nothing dropped silently:* `send` returns the event id or raises;
every send carries the outbox's stable txn id, so a retry after a crash is deduplicated
by the homeserver instead of posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import ClassVar

import aiohttp
import structlog
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinedRoomsResponse,
    JoinError,
    LoginResponse,
    RoomResolveAliasResponse,
    SyncResponse,
    WhoamiResponse,
)

from imbridge.adapter import (
    Capabilities,
    Cursors,
    EventSink,
    Media,
    MediaUnavailable,
    NetworkConfig,
    RateLimit,
)
from imbridge.errors import AdapterError
from imbridge.events import Attachment
from imbridge.intake import Intake
from imbridge.medialinks import MediaLinks

from . import proxy
from .config import MatrixConfig
from .sending import Sending
from .sync import FIRST_SYNC_FILTER, Receiving
from .translate import MediaLinker

log = structlog.get_logger("imbridge.adapters.matrix")


class MatrixAdapter(Receiving, Sending):
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
        self._cursors = cursors
        self._client = AsyncClient(
            config.homeserver,
            config.user_id,
            store_path=None,
            config=AsyncClientConfig(
                max_limit_exceeded=0,  # 429s go back to the outbox, which keeps order
                max_timeouts=0,
                request_timeout=config.request_timeout,
                store_sync_tokens=False,
                encryption_enabled=False,
            ),
        )
        self._sink: EventSink | None = None
        self._intake: Intake | None = None
        self._rooms: dict[str, str] = {}  # room id -> the room's name in the config
        self._ids: dict[str, str] = {}  # configured name -> room id
        self._joined: set[str] = set()  # room ids the account is in
        self._pending_join: set[str] = set()  # joined now: skip history up to our join
        self._awaiting_invite: set[str] = set()
        self._encrypted: set[str] = set()
        self._direct: set[str] = set()  # direct chats the relay accepted (room ids)
        self._since: str | None = None
        self._connected = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(network=name)
        self._links = media_links
        self._http: aiohttp.ClientSession | None = None  # media downloads, own timeouts
        self._auth_media_checked = False

    @property
    def connected(self) -> bool:
        return self._connected

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._intake = Intake(sink)
        self._closed = False  # the daemon may retry start() after a failed one + aclose()
        await self._login()
        joined = await self._client.joined_rooms()
        if not isinstance(joined, JoinedRoomsResponse):
            raise AdapterError(f"matrix: listing joined rooms failed: {joined}")
        self._joined = set(joined.rooms)
        stored_rooms = await self._cursors.get("rooms")
        if stored_rooms:
            self._rooms = dict(json.loads(stored_rooms))
            self._ids = {v: k for k, v in self._rooms.items()}
        self._direct = set(json.loads(await self._cursors.get("direct_rooms") or "[]"))
        self._since = await self._cursors.get("next_batch")
        resumed = self._since is not None
        if not resumed:
            await self._first_sync()
        await self._check_media_links()
        self._connected = True
        self._task = asyncio.create_task(self._sync_forever(), name=f"matrix-sync-{self.name}")
        self._log.info("connected", user_id=self.identity, resumed=resumed)

    async def aclose(self) -> None:
        self._closed = True
        self._connected = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._intake is not None:
            # A sync replays from the stored token, so nothing in flight is lost.
            await self._intake.aclose(grace=0)
        http, self._http = self._http, None
        if http is not None:
            await http.close()
        await self._client.close()

    async def _login(self) -> None:
        """Token login; with a password, reuse the token stored by an earlier login so
        the device (and its transaction-id scope) stays the same across restarts."""
        cfg = self.config
        token = cfg.access_token.get_secret_value() if cfg.access_token else None
        if token is None:
            token = await self._cursors.get("access_token")
        if token is not None:
            self._client.access_token = token
            async with asyncio.timeout(cfg.request_timeout):
                who = await self._client.whoami()
            if isinstance(who, WhoamiResponse):
                self._client.user_id = who.user_id
                self._client.device_id = who.device_id or ""
                return
            if cfg.password is None:
                raise AdapterError(f"matrix: access token rejected: {who}")
        assert cfg.password is not None  # noqa: S101 - the config requires one of the two
        async with asyncio.timeout(cfg.request_timeout):
            resp = await self._client.login(
                cfg.password.get_secret_value(), device_name=cfg.device_name
            )
        if not isinstance(resp, LoginResponse):
            raise AdapterError(f"matrix: login failed: {resp}")
        await self._cursors.set("access_token", resp.access_token)
        self._log.info("logged_in", device_id=resp.device_id)

    async def _first_sync(self) -> None:
        """The first start: take the current position, relay none of the past."""
        async with asyncio.timeout(self.config.request_timeout * 3):
            resp = await self._client.sync(timeout=0, sync_filter=FIRST_SYNC_FILTER,
                                           full_state=True)  # fmt: skip
        if not isinstance(resp, SyncResponse):
            raise AdapterError(f"matrix: first sync failed: {resp}")
        self._since = resp.next_batch
        await self._cursors.set("next_batch", resp.next_batch)

    # ------------------------------------------------------------------ rooms

    async def join(self, room: str) -> None:
        """Join a room by id (`!…`) or alias (`#…:server`); an invite-only room the
        account is not invited to yet is joined when the invite arrives."""
        room_id = await self._resolve(room)
        self._rooms[room_id] = room
        self._ids[room] = room_id
        await self._cursors.set("rooms", json.dumps(self._rooms))
        if room_id in self._joined:
            return
        self._pending_join.add(room_id)
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._client.join(room_id)
        if isinstance(resp, JoinError):
            self._pending_join.discard(room_id)
            if resp.status_code == "M_FORBIDDEN":
                self._awaiting_invite.add(room_id)
                self._log.warning("join_waiting_invite", room=room, error=str(resp))
                return
            raise AdapterError(f"matrix: joining {room} failed: {resp}")
        self._joined.add(room_id)
        self._log.info("joined", room=room, room_id=room_id)

    async def _resolve(self, room: str) -> str:
        if room.startswith("!"):
            return room
        if not room.startswith("#"):
            raise AdapterError(f"matrix: {room!r} is neither a room id (!…) nor alias (#…)")
        if room in self._ids:
            return self._ids[room]
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._client.room_resolve_alias(room)
        if not isinstance(resp, RoomResolveAliasResponse):
            raise AdapterError(f"matrix: cannot resolve {room}: {resp}")
        return str(resp.room_id)

    # ------------------------------------------------------------------ media

    def _media_linker(self) -> MediaLinker | None:
        links = self._links
        if links is None:
            return None
        return lambda server, media_id, name: links.link(self.name, f"{server}/{media_id}", name)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _check_media_links(self) -> None:
        """Without signed links, relayed media are plain download URLs, which a homeserver
        with authenticated media (Matrix 1.11) refuses: say so once, with the fix."""
        if self._links is not None or self._auth_media_checked:
            return
        self._auth_media_checked = True
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
            async with asyncio.timeout(self.config.request_timeout):
                authenticated = await proxy.requires_auth(self._session(), self.config.homeserver)
            if authenticated:
                self._log.warning(
                    "media_links_will_not_open",
                    reason="the homeserver serves media only to logged-in clients "
                    "(authenticated media), so relayed attachment links will not open",
                    fix="set bridge.http.public_url (and bridge.http.listen) so the bridge "
                    "serves them through signed links",
                )

    def open_attachment(self, attachment: Attachment) -> AbstractAsyncContextManager[Media] | None:
        """For the archive (`AttachmentSource`): media this adapter linked, read with its
        token, so the bytes are kept even where plain download links open for no one."""
        ref = proxy.ref_of(
            attachment.url, homeserver=self.config.homeserver, network=self.name, links=self._links
        )
        return None if ref is None else self.open_media(ref)

    @asynccontextmanager
    async def open_media(self, ref: str) -> AsyncIterator[Media]:
        """Stream `server/media_id` from the homeserver with this account's token."""
        token = self._client.access_token
        if self._closed or not token:
            raise MediaUnavailable(f"matrix {self.name}: not logged in")
        async with proxy.download(
            self._session(), self.config.homeserver, ref, token,
            timeout=self.config.request_timeout,
        ) as (mimetype, size, chunks):  # fmt: skip
            yield Media(mimetype=mimetype, size=size, chunks=chunks,
                        max_bytes=self.config.media_max_bytes)  # fmt: skip
