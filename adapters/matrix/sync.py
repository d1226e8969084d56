"""Receiving: the `/sync` long-poll, gap back-fill, invites, and the hand-over of each
timeline event to the core.

The promises kept here: the sync `next_batch` is stored only after the sink returned for
every event of its batch; a gap in a limited timeline is back-filled, so a burst larger
than the timeline limit loses nothing; a fresh join skips what happened before the
bridge arrived; an encrypted room is announced once and never relayed. With
`direct_messages` on, an invite to a direct chat is accepted and what is then said there
goes to the core as a private message to the relay (`Origin.direct`, room = the room id,
which is where the answer goes); other rooms outside the config are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    InviteInfo,
    InviteMemberEvent,
    JoinError,
    MessageDirection,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
)

from imbridge.adapter import Cursors
from imbridge.errors import AdapterError
from imbridge.events import new_event_id
from imbridge.intake import Intake

from .config import MatrixConfig
from .translate import MediaLinker, direct_inviter, parse_event, to_core

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
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class Receiving:
    """The receiving half of `MatrixAdapter`, which owns the state declared here."""

    name: str
    config: MatrixConfig
    _client: AsyncClient
    _cursors: Cursors
    _intake: Intake | None
    _rooms: dict[str, str]
    _joined: set[str]
    _pending_join: set[str]
    _awaiting_invite: set[str]
    _encrypted: set[str]
    _direct: set[str]
    _since: str | None
    _connected: bool
    _closed: bool
    _log: Any

    @property
    def identity(self) -> str:
        return self.config.user_id

    def _media_linker(self) -> MediaLinker | None:
        return None

    async def _login(self) -> None:
        raise NotImplementedError

    def _inbound(self) -> Intake:
        if self._intake is None:
            raise AdapterError(f"{self.name}: not started")
        return self._intake

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
                    raise SyncFailed(resp)
                self._connected = True
                await self._handle_sync(resp)
                await self._inbound().drain()  # every event on disk before the token moves
                self._since = resp.next_batch
                await self._cursors.set("next_batch", resp.next_batch)
                full_state = False
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                delay = backoff
                if isinstance(exc, SyncFailed):
                    delay = exc.retry_after or backoff
                    if exc.status_code == "M_UNKNOWN_TOKEN":
                        self._connected = False
                        with contextlib.suppress(Exception):
                            await self._relogin()
                if isinstance(exc, (*NETWORK_ERRORS, SyncFailed)):
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
        for room_id, invite in resp.rooms.invite.items():
            if room_id in self._awaiting_invite:
                await self._accept_invite(room_id)
            elif self.config.direct_messages and self._is_direct_invite(invite):
                await self._accept_direct(room_id)
            # invites to other rooms not configured: left alone
        for room_id, info in resp.rooms.join.items():
            if room_id not in self._rooms and room_id not in self._direct:
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

    def _is_direct_invite(self, invite: InviteInfo) -> bool:
        state = [
            {
                "type": "m.room.member",
                "state_key": e.state_key,
                "sender": e.sender,
                "content": e.content,
            }
            for e in invite.invite_state
            if isinstance(e, InviteMemberEvent)
        ]
        return direct_inviter(state, self.identity) is not None

    async def _accept_direct(self, room_id: str) -> None:
        """Join a direct chat someone opened with the relay; remembered across restarts,
        so what is said there keeps reaching the archive."""
        self._pending_join.add(room_id)
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._client.join(room_id)
        if isinstance(resp, JoinError):
            self._pending_join.discard(room_id)
            self._log.warning("direct_join_failed", room_id=room_id, error=str(resp))
            return
        self._direct.add(room_id)
        self._joined.add(room_id)
        await self._cursors.set("direct_rooms", json.dumps(sorted(self._direct)))
        self._log.info("joined_direct", room_id=room_id)

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
                raise SyncFailed(resp)
            if not resp.chunk:
                break
            older.extend(e.source for e in resp.chunk)
            token = resp.end if resp.end != token else None
        if len(older) >= BACKFILL_MAX:
            self._log.error(
                "backfill_truncated", room=self._rooms.get(room_id, room_id), events=len(older)
            )
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
        inbound = parse_event(source, self.config.homeserver, link=self._media_linker())
        if inbound is None:
            return
        direct = room_id not in self._rooms
        if direct and inbound.action in ("join", "leave", "topic"):
            return  # a direct chat's membership is nobody's business but the archive's
        target = await self._cursors.event_id(inbound.target) if inbound.target else None
        reply = await self._cursors.event_id(inbound.reply_to) if inbound.reply_to else None
        event = to_core(
            inbound,
            event_id=new_event_id(),
            network=self.name,
            room=room_id if direct else self._rooms[room_id],
            sender_name=self._display_name(room_id, sender),
            target=target,
            reply_to=reply,
            direct=direct,
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
        self._log.warning("encrypted_room_not_bridged", room=self._rooms.get(room_id, room_id))
        key = f"encrypted_notice:{room_id}"
        if not self.config.encrypted_room_notice or await self._cursors.get(key):
            return
        content = {"msgtype": "m.notice", "body": ENCRYPTED_NOTICE}
        with contextlib.suppress(*NETWORK_ERRORS):
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self._client.room_send(room_id, "m.room.message", content,
                                                    tx_id=f"imbridge-e2ee-{room_id}")  # fmt: skip
            if isinstance(resp, RoomSendResponse):
                await self._cursors.set(key, resp.event_id)


class SyncFailed(Exception):
    def __init__(self, resp: object) -> None:
        super().__init__(str(resp))
        self.status_code = getattr(resp, "status_code", None)
        ms = getattr(resp, "retry_after_ms", None)
        self.retry_after = ms / 1000 if isinstance(ms, int | float) and ms > 0 else None
