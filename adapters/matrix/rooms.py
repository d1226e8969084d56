"""The rooms of the relay account: those the config names (by id or alias), those it is
in, the direct chats it accepted, and the encrypted ones it will not bridge.

A room the config names is joined at once, or, when it is invite-only, as soon as the
invite arrives. With `direct_messages` on, an invite to a direct chat is accepted and
remembered across restarts, so what is said there keeps reaching the archive; other
rooms outside the config are left alone. An encrypted room is announced once, in the
log and in the room, and never relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from nio import (
    InviteInfo,
    InviteMemberEvent,
    JoinedRoomsResponse,
    JoinError,
    RoomGetStateEventResponse,
    RoomLeaveError,
    RoomResolveAliasResponse,
    RoomSendResponse,
)

from imbridge.adapter import Cursors
from imbridge.errors import AdapterError

from .config import MatrixConfig
from .proto.mentions import Members
from .proto.translate import direct_inviter
from .session import Session

ENCRYPTED_NOTICE = (
    "This room is end-to-end encrypted: imbridge does not bridge encrypted rooms, so "
    "nothing said here is relayed, and nothing from other networks will appear here."
)
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class Rooms:
    """Which room is which, and joining them; the only writer of that state."""

    def __init__(
        self, name: str, config: MatrixConfig, cursors: Cursors, *, session: Session, log: Any
    ) -> None:
        self.name = name
        self.config = config
        self._cursors = cursors
        self._session = session
        self._log = log
        self.names: dict[str, str] = {}  # room id -> the room's name in the config
        self.ids: dict[str, str] = {}  # configured name -> room id
        self.joined: set[str] = set()  # room ids the account is in
        self.pending_join: set[str] = set()  # joined now: skip history up to our join
        self._awaiting_invite: set[str] = set()
        self._encrypted: set[str] = set()
        self.direct: set[str] = set()  # direct chats the relay accepted (room ids)
        self._members: dict[str, Members] = {}  # room id -> who may be mentioned there
        self._member_names: dict[tuple[str, str], str] = {}  # appservice mode: no sync state

    async def load(self) -> None:
        """What the homeserver says the account is in, and the rooms and direct chats
        stored by an earlier run."""
        client = self._session.client
        joined = await client.joined_rooms()
        if not isinstance(joined, JoinedRoomsResponse):
            raise AdapterError(f"matrix: listing joined rooms failed: {joined}")
        self.joined = set(joined.rooms)
        stored_rooms = await self._cursors.get("rooms")
        if stored_rooms:
            self.names = dict(json.loads(stored_rooms))
            self.ids = {v: k for k, v in self.names.items()}
        self.direct = set(json.loads(await self._cursors.get("direct_rooms") or "[]"))

    def relayed(self, room_id: str) -> bool:
        """A configured room or an accepted direct chat: what the sync hands over."""
        return room_id in self.names or room_id in self.direct

    def seen_in(self, room_id: str) -> None:
        self.joined.add(room_id)

    def left(self, room_id: str) -> None:
        self.joined.discard(room_id)

    def arrived(self, room_id: str) -> None:
        """Our own join was seen in the timeline: what follows it is relayed."""
        self.pending_join.discard(room_id)

    async def join(self, room: str) -> None:
        """Join a room by id (`!…`) or alias (`#…:server`); an invite-only room the
        account is not invited to yet is joined when the invite arrives."""
        room_id = await self._resolve(room)
        self.names[room_id] = room
        self.ids[room] = room_id
        await self._cursors.set("rooms", json.dumps(self.names))
        if room_id in self.joined:
            return
        self.pending_join.add(room_id)
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._session.client.join(room_id)
        if isinstance(resp, JoinError):
            self.pending_join.discard(room_id)
            if resp.status_code == "M_FORBIDDEN":
                self._awaiting_invite.add(room_id)
                self._log.warning("join_waiting_invite", room=room, error=str(resp))
                return
            raise AdapterError(f"matrix: joining {room} failed: {resp}")
        self.joined.add(room_id)
        self._log.info("joined", room=room, room_id=room_id)

    async def leave(self, room: str) -> None:
        """Stops relaying `room` (forgotten here and in the stored names, so a restart
        does not take it up again) and leaves it on the homeserver."""
        room_id = self.ids.pop(room, None)
        if room_id is None:
            return
        self.names.pop(room_id, None)
        self.pending_join.discard(room_id)
        self._awaiting_invite.discard(room_id)
        await self._cursors.set("rooms", json.dumps(self.names))
        if room_id in self.joined:
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self._session.client.room_leave(room_id)
            if isinstance(resp, RoomLeaveError):
                raise AdapterError(f"matrix: leaving {room} failed: {resp}")
            self.joined.discard(room_id)
        self._log.info("left", room=room, room_id=room_id)

    async def _resolve(self, room: str) -> str:
        if room.startswith("!"):
            return room
        if not room.startswith("#"):
            raise AdapterError(f"matrix: {room!r} is neither a room id (!…) nor alias (#…)")
        if room in self.ids:
            return self.ids[room]
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._session.client.room_resolve_alias(room)
        if not isinstance(resp, RoomResolveAliasResponse):
            raise AdapterError(f"matrix: cannot resolve {room}: {resp}")
        return str(resp.room_id)

    # --- invites ----------------------------------------------------------------------

    async def invited(self, room_id: str, invite: InviteInfo) -> None:
        """An invite in the sync: accepted for a configured room waiting for it, or a
        direct chat when `direct_messages` is on; invites to other rooms are left alone."""
        if room_id in self._awaiting_invite:
            await self._accept_invite(room_id)
        elif self.config.direct_messages and self._is_direct_invite(invite):
            await self._accept_direct(room_id)

    async def _accept_invite(self, room_id: str) -> None:
        self.pending_join.add(room_id)
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._session.client.join(room_id)
        if isinstance(resp, JoinError):
            self.pending_join.discard(room_id)
            self._log.warning("join_failed", room=self.names.get(room_id), error=str(resp))
            return
        self._awaiting_invite.discard(room_id)
        self.joined.add(room_id)
        self._log.info("joined", room=self.names.get(room_id), room_id=room_id, invited=True)

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
        return direct_inviter(state, self._session.identity) is not None

    async def _accept_direct(self, room_id: str) -> None:
        """Join a direct chat someone opened with the relay; remembered across restarts,
        so what is said there keeps reaching the archive."""
        self.pending_join.add(room_id)
        async with asyncio.timeout(self.config.request_timeout):
            resp = await self._session.client.join(room_id)
        if isinstance(resp, JoinError):
            self.pending_join.discard(room_id)
            self._log.warning("direct_join_failed", room_id=room_id, error=str(resp))
            return
        self.direct.add(room_id)
        self.joined.add(room_id)
        await self._cursors.set("direct_rooms", json.dumps(sorted(self.direct)))
        self._log.info("joined_direct", room_id=room_id)

    # --- what the client knows of a room ----------------------------------------------

    def remember_name(self, room_id: str, user_id: str, name: str) -> None:
        self._member_names[(room_id, user_id)] = name

    async def learn_name(self, room_id: str, user_id: str) -> None:
        """In appservice mode no sync keeps room state: a sender's display name is read
        from their membership once, then follows their pushed member events."""
        if (room_id, user_id) in self._member_names:
            return
        name = user_id[1:].split(":", 1)[0] or user_id
        with contextlib.suppress(*NETWORK_ERRORS):
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self._session.client.room_get_state_event(
                    room_id, "m.room.member", user_id
                )
            if isinstance(resp, RoomGetStateEventResponse):
                shown = resp.content.get("displayname")
                name = shown if isinstance(shown, str) and shown else name
        self._member_names[(room_id, user_id)] = name

    async def invite_pushed(self, room_id: str) -> None:
        """Appservice mode: the bot was invited to a configured room waiting for it."""
        if room_id in self._awaiting_invite:
            await self._accept_invite(room_id)

    def display_name(self, room_id: str, user_id: str) -> str:
        known = self._member_names.get((room_id, user_id))
        if known is not None:
            return known
        room = self._session.client.rooms.get(room_id)
        user = room.users.get(user_id) if room is not None else None
        if user is not None and user.display_name:
            return str(user.display_name)
        return user_id[1:].split(":", 1)[0] or user_id

    def members(self, room_id: str) -> Members:
        """Who else is in the room: the people a relayed message may mention. Kept per
        room until `members_changed`, as indexing thousands of names per message would
        cost more than the message."""
        known = self._members.get(room_id)
        if known is not None:
            return known
        room = self._session.client.rooms.get(room_id)
        own = self._session.identity
        users = room.users.items() if room is not None else ()
        made = Members.of({uid: str(u.display_name or "") for uid, u in users if uid != own})
        if room is not None:
            self._members[room_id] = made
        return made

    def members_changed(self, room_id: str) -> None:
        self._members.pop(room_id, None)

    def is_encrypted(self, room_id: str) -> bool:
        room = self._session.client.rooms.get(room_id)
        return room_id in self._encrypted or bool(room is not None and room.encrypted)

    async def encrypted_room(self, room_id: str) -> None:
        """Say once, in the log and in the room, that an encrypted room is not bridged."""
        if room_id in self._encrypted:
            return
        self._encrypted.add(room_id)
        self._log.warning("encrypted_room_not_bridged", room=self.names.get(room_id, room_id))
        key = f"encrypted_notice:{room_id}"
        if not self.config.encrypted_room_notice or await self._cursors.get(key):
            return
        content = {"msgtype": "m.notice", "body": ENCRYPTED_NOTICE}
        with contextlib.suppress(*NETWORK_ERRORS):
            async with asyncio.timeout(self.config.request_timeout):
                resp = await self._session.client.room_send(
                    room_id, "m.room.message", content, tx_id=f"imbridge-e2ee-{room_id}"
                )
            if isinstance(resp, RoomSendResponse):
                await self._cursors.set(key, resp.event_id)
