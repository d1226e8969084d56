"""The Matrix adapter: login, room joins, sending, and the sync loop; the only I/O.

Translation lives in `translate` (pure); this module moves requests and keeps three
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
import fnmatch
import json
from typing import Any, ClassVar, NoReturn

import aiohttp
import structlog
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinedRoomsResponse,
    JoinError,
    LoginResponse,
    MessageDirection,
    RoomMessagesResponse,
    RoomRedactResponse,
    RoomResolveAliasResponse,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)

from imbridge.adapter import Capabilities, Cursors, EventSink, NetworkConfig, Outgoing, RateLimit
from imbridge.errors import AdapterError, PermanentSendError, RetryableSendError
from imbridge.events import Message, RemoteId, new_event_id
from imbridge.intake import Intake

from . import media
from .config import MatrixConfig
from .translate import RedactWire, SendWire, Wire, parse_event, to_core, to_wire

log = structlog.get_logger("imbridge.adapters.matrix")

SYNC_FILTER = {
    "room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": False}},
    "presence": {"types": []},
    "account_data": {"types": []},
}
FIRST_SYNC_FILTER = {**SYNC_FILTER, "room": {"timeline": {"limit": 1}}}
BACKFILL_MAX = 5000  # events fetched to close one gap; beyond, the gap is logged
ENCRYPTED_NOTICE = (
    "This room is end-to-end encrypted: imbridge does not bridge encrypted rooms, so "
    "nothing said here is relayed, and nothing from other networks will appear here."
)
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class MatrixAdapter:
    """One Matrix account, relaying the rooms the core joins."""

    config_model: ClassVar[type[NetworkConfig]] = MatrixConfig
    # Stock Synapse allows 0.2 msg/s (burst 10) per user; homeservers that host a relay
    # usually exempt it. 429s are honoured either way (RetryableSendError.retry_after).
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=10.0, burst=50)
    capabilities = Capabilities(
        edits=True,
        deletes=True,
        replies=True,
        attachments=True,
        formatting="html",
        max_text_bytes=30_000,  # events are capped at 64 KiB with body and formatted_body
    )

    def __init__(self, name: str, config: NetworkConfig, cursors: Cursors) -> None:
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
        self._since: str | None = None
        self._connected = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(network=name)

    @property
    def identity(self) -> str:
        return self.config.user_id

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
        self._since = await self._cursors.get("next_batch")
        resumed = self._since is not None
        if not resumed:
            await self._first_sync()
        self._connected = True
        self._task = asyncio.create_task(self._sync_forever(), name=f"matrix-sync-{self.name}")
        self._log.info("connected", user_id=self.identity, resumed=resumed)

    def _inbound(self) -> Intake:
        if self._intake is None:
            raise AdapterError(f"{self.name}: not started")
        return self._intake

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

    # ------------------------------------------------------------------ sending

    async def send(self, item: Outgoing) -> RemoteId:
        if not self._connected:
            raise RetryableSendError("matrix: offline")
        room_id = self._ids.get(item.room)
        if room_id is None or room_id not in self._joined:
            raise RetryableSendError(f"matrix: not in {item.room} yet")
        if self._is_encrypted(room_id):
            raise PermanentSendError(f"matrix: {item.room} is encrypted; not bridged")
        try:
            wire = to_wire(item)
        except ValueError as exc:
            raise PermanentSendError(f"matrix: {exc}") from exc
        event = item.event
        if self.config.media == "upload" and isinstance(event, Message) and event.attachments:
            return await self._send_with_media(room_id, item, event)
        return await self._request(room_id, wire, item.txn_id)

    async def _send_with_media(self, room_id: str, item: Outgoing, event: Message) -> RemoteId:
        """Text first (if any), then one media event per attachment, each with its own
        txn id derived from the item's, so a retry re-sends none of them twice."""
        first: RemoteId | None = None
        if event.text:
            text_item = Outgoing(room=item.room, event=_without_attachments(event),
                                 reply_to=item.reply_to, txn_id=item.txn_id)  # fmt: skip
            first = await self._request(room_id, to_wire(text_item), item.txn_id)
        marker = to_wire(item)
        assert isinstance(marker, SendWire)  # noqa: S101 - a Message always sends
        for i, att in enumerate(event.attachments):
            got = await media.fetch_capped(att.url, self.config.media_max_bytes,
                                           self.config.request_timeout)  # fmt: skip
            async with asyncio.timeout(self.config.request_timeout * 3):
                up, _ = await self._client.upload(
                    _Bytes(got.data), content_type=got.mimetype,
                    filename=att.name or "file", filesize=len(got.data),
                )  # fmt: skip
            if not isinstance(up, UploadResponse):
                _raise_for(up, "upload")
            content = {
                "msgtype": media.msgtype_for(got.mimetype),
                "body": att.name or "file",
                "url": up.content_uri,
                "info": {"mimetype": got.mimetype, "size": len(got.data)},
                **{k: v for k, v in marker.content.items() if k.startswith("org.imbridge")},
            }
            wire = SendWire(event_type="m.room.message", content=content)
            rid = await self._request(room_id, wire, f"{item.txn_id}.{i}")
            first = first or rid
        assert first is not None  # noqa: S101 - a message has text or attachments
        return first

    async def _request(self, room_id: str, wire: Wire, txn_id: str) -> RemoteId:
        resp: Any
        try:
            async with asyncio.timeout(self.config.request_timeout):
                match wire:
                    case SendWire():
                        resp = await self._client.room_send(
                            room_id, wire.event_type, wire.content, tx_id=txn_id
                        )
                    case RedactWire():
                        resp = await self._client.room_redact(room_id, wire.target, tx_id=txn_id)
        except _NETWORK_ERRORS as exc:
            raise RetryableSendError(f"matrix: {type(exc).__name__}: {exc}") from exc
        if isinstance(resp, RoomSendResponse | RoomRedactResponse):
            return RemoteId(resp.event_id)
        _raise_for(resp, "send")

    # ------------------------------------------------------------------ receiving

    async def _sync_forever(self) -> None:
        """Long-poll `/sync` until closed; back off on errors, honour 429."""
        backoff = 1.0
        full_state = True  # the first loop sync rebuilds room state (names, encryption)
        while not self._closed:
            try:
                async with asyncio.timeout(
                    self.config.sync_timeout_ms / 1000 + self.config.request_timeout
                ):
                    resp = await self._client.sync(
                        timeout=self.config.sync_timeout_ms, since=self._since,
                        sync_filter=SYNC_FILTER, full_state=full_state,
                    )  # fmt: skip
                if not isinstance(resp, SyncResponse):
                    raise _SyncFailed(resp)
                self._connected = True
                await self._handle_sync(resp)
                await self._inbound().drain()  # every event on disk before the token moves
                self._since = resp.next_batch
                await self._cursors.set("next_batch", resp.next_batch)
                full_state = False
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                delay = backoff
                if isinstance(exc, _SyncFailed):
                    delay = exc.retry_after or backoff
                    if exc.status_code == "M_UNKNOWN_TOKEN":
                        self._connected = False
                        with contextlib.suppress(Exception):
                            await self._relogin()
                if isinstance(exc, (*_NETWORK_ERRORS, _SyncFailed)):
                    self._connected = False
                self._log.warning("sync_retry", error=repr(exc)[:300], delay=delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 30.0)

    async def _relogin(self) -> None:
        if self.config.password is not None:
            await self._cursors.set("access_token", "")
            self._client.access_token = ""
            await self._login()

    async def _handle_sync(self, resp: SyncResponse) -> None:
        for room_id in resp.rooms.invite:  # invites to rooms not configured: left alone
            if room_id in self._awaiting_invite:
                await self._accept_invite(room_id)
        for room_id, info in resp.rooms.join.items():
            if room_id not in self._rooms:
                continue
            self._joined.add(room_id)
            events = [e.source for e in info.timeline.events]
            if (
                info.timeline.limited
                and info.timeline.prev_batch
                and room_id not in (self._pending_join)
            ):
                events = [*await self._backfill(room_id, info.timeline.prev_batch), *events]
            await self._handle_room(room_id, events)
            if self._is_encrypted(room_id):
                await self._encrypted_room(room_id)
        for room_id in resp.rooms.leave:
            self._joined.discard(room_id)

    async def _accept_invite(self, room_id: str) -> None:
        self._pending_join.add(room_id)
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._client.join(room_id)
        if isinstance(resp, JoinError):
            self._pending_join.discard(room_id)
            self._log.warning("join_failed", room=self._rooms.get(room_id), error=str(resp))
            return
        self._awaiting_invite.discard(room_id)
        self._joined.add(room_id)
        self._log.info("joined", room=self._rooms.get(room_id), room_id=room_id, invited=True)

    async def _backfill(self, room_id: str, prev_batch: str) -> list[dict[str, Any]]:
        """The events between our last position and a limited timeline's start, oldest
        first: without them a burst larger than the timeline limit would lose messages."""
        older: list[dict[str, Any]] = []
        token: str | None = prev_batch
        while token and len(older) < BACKFILL_MAX:
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self._client.room_messages(
                    room_id, start=token, end=self._since, direction=MessageDirection.back,
                    limit=100,
                )  # fmt: skip
            if not isinstance(resp, RoomMessagesResponse):
                raise _SyncFailed(resp)
            if not resp.chunk:
                break
            older.extend(e.source for e in resp.chunk)
            token = resp.end if resp.end != token else None
        if len(older) >= BACKFILL_MAX:
            self._log.error("backfill_truncated", room=self._rooms[room_id], events=len(older))
        older.reverse()
        return older

    async def _handle_room(self, room_id: str, events: list[dict[str, Any]]) -> None:
        pending = room_id in self._pending_join
        for source in events:
            if pending:
                if (
                    source.get("type") == "m.room.member"
                    and source.get("state_key") == self.identity
                    and isinstance(source.get("content"), dict)
                    and source["content"].get("membership") == "join"
                ):
                    pending = False
                    self._pending_join.discard(room_id)
                continue
            await self._handle_event(room_id, source)
        if pending and events:
            # Our join was not among these events: they all came after it.
            self._pending_join.discard(room_id)

    async def _handle_event(self, room_id: str, source: dict[str, Any]) -> None:
        etype = source.get("type")
        if etype in ("m.room.encryption", "m.room.encrypted") or self._is_encrypted(room_id):
            await self._encrypted_room(room_id)
            return
        sender = source.get("sender")
        if sender == self.identity or not isinstance(sender, str):
            return
        if any(fnmatch.fnmatchcase(sender, glob) for glob in self.config.ignore_users):
            return
        if not isinstance(source.get("event_id"), str):
            return
        # An event handed over before (a batch replayed after a restart) is recognised by
        # the relay by its remote id, in the same commit that would record it.
        inbound = parse_event(source, self.config.homeserver)
        if inbound is None:
            return
        target = await self._cursors.event_id(inbound.target) if inbound.target else None
        reply = await self._cursors.event_id(inbound.reply_to) if inbound.reply_to else None
        event = to_core(
            inbound,
            event_id=new_event_id(),
            network=self.name,
            room=self._rooms[room_id],
            sender_name=self._display_name(room_id, sender),
            target=target,
            reply_to=reply,
        )
        if event is not None:
            await self._inbound().put(event)

    def _display_name(self, room_id: str, user_id: str) -> str:
        room = self._client.rooms.get(room_id)
        user = room.users.get(user_id) if room is not None else None
        if user is not None and user.display_name:
            return str(user.display_name)
        return user_id[1:].split(":", 1)[0] or user_id

    def _is_encrypted(self, room_id: str) -> bool:
        room = self._client.rooms.get(room_id)
        return room_id in self._encrypted or bool(room is not None and room.encrypted)

    async def _encrypted_room(self, room_id: str) -> None:
        """Say once, in the log and in the room, that an encrypted room is not bridged."""
        if room_id in self._encrypted:
            return
        self._encrypted.add(room_id)
        self._log.warning("encrypted_room_not_bridged", room=self._rooms[room_id])
        key = f"encrypted_notice:{room_id}"
        if not self.config.encrypted_room_notice or await self._cursors.get(key):
            return
        content = {"msgtype": "m.notice", "body": ENCRYPTED_NOTICE}
        with contextlib.suppress(*_NETWORK_ERRORS):
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self._client.room_send(room_id, "m.room.message", content,
                                                    tx_id=f"imbridge-e2ee-{room_id}")  # fmt: skip
            if isinstance(resp, RoomSendResponse):
                await self._cursors.set(key, resp.event_id)


class _SyncFailed(Exception):
    def __init__(self, resp: object) -> None:
        super().__init__(str(resp))
        self.status_code = getattr(resp, "status_code", None)
        ms = getattr(resp, "retry_after_ms", None)
        self.retry_after = ms / 1000 if isinstance(ms, int | float) and ms > 0 else None


class _Bytes:
    """A data provider for `AsyncClient.upload` that can be asked again on a retry."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __call__(self, _got_429: int, _got_timeouts: int) -> bytes:
        return self._data


def _without_attachments(event: Message) -> Message:
    return Message(id=event.id, origin=event.origin, text=event.text, rich=event.rich,
                   kind=event.kind, reply_to=event.reply_to)  # fmt: skip


def _http_status(resp: object) -> int | None:
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


def _raise_for(resp: object, what: str) -> NoReturn:
    """Turn a homeserver error into the outbox's two kinds of failure."""
    status = _http_status(resp)
    code = resp.status_code if isinstance(resp, ErrorResponse) else None
    msg = f"matrix {what}: {resp}"
    if status == 429 or code == "M_LIMIT_EXCEEDED":
        ms = getattr(resp, "retry_after_ms", None)
        retry = ms / 1000 if isinstance(ms, int | float) and ms > 0 else 1.0
        raise RetryableSendError(msg, retry_after=retry)
    if status is None or status >= 500 or code == "M_UNKNOWN_TOKEN":
        raise RetryableSendError(msg)
    raise PermanentSendError(msg)
