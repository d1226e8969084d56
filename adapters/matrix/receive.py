"""Receiving: the `/sync` long-poll, gap back-fill, and the hand-over of each timeline
event to the core.

The promises kept here: the sync `next_batch` is stored only after the sink returned for
every event of its batch; a gap in a limited timeline is back-filled, so a burst larger
than the timeline limit loses nothing; the first start and a fresh join skip what
happened before the bridge arrived; an encrypted room is never relayed. In a direct
chat the relay accepted, what is said goes to the core as a private message to the
relay (`Origin.direct`, room = the room id, which is where the answer goes). The sync
loop is also the session's keep-alive: it marks the session offline while the
homeserver does not answer, and logs in again when the token was forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
from collections.abc import Callable
from typing import Any

from nio import MessageDirection, RoomMessagesResponse, SyncResponse

from imbridge.adapter import Cursors, EventSink
from imbridge.errors import AdapterError
from imbridge.events import new_event_id
from imbridge.intake import Intake

from .config import MatrixConfig
from .media import MatrixMedia
from .portals import Portal, Portals
from .proto.translate import parse_event, to_core
from .rooms import NETWORK_ERRORS, Rooms
from .session import Session

SYNC_FILTER = {
    "room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": False}},
    "presence": {"types": []},
    "account_data": {"types": []},
}
FIRST_SYNC_FILTER = {**SYNC_FILTER, "room": {"timeline": {"limit": 1}}}
IsGhost = Callable[[str], bool]
BACKFILL_MAX = 5000  # events fetched to close one gap; beyond, the gap is logged


class Receiver:
    """The sync loop and what it hands to the core; the only writer of the sync token."""

    def __init__(
        self,
        name: str,
        config: MatrixConfig,
        cursors: Cursors,
        *,
        session: Session,
        rooms: Rooms,
        media: MatrixMedia,
        log: Any,
        portals: Portals | None = None,
    ) -> None:
        self.name = name
        self._portals = portals
        self.config = config
        self._cursors = cursors
        self._session = session
        self._client = session.client
        self._rooms = rooms
        self._media = media
        self._log = log
        self._intake: Intake | None = None
        self._since: str | None = None

    def attach(self, sink: EventSink) -> None:
        self._intake = Intake(sink)

    async def aclose(self) -> None:
        if self._intake is not None:
            # A sync replays from the stored token, so nothing in flight is lost.
            await self._intake.aclose(grace=0)

    def _inbound(self) -> Intake:
        if self._intake is None:
            raise AdapterError(f"{self.name}: not started")
        return self._intake

    async def resume(self) -> bool:
        """Where the last run stopped; on the very first start, the current position, so
        none of the past is relayed. True when resuming."""
        self._since = await self._cursors.get("next_batch")
        if self._since is not None:
            return True
        async with asyncio.timeout(self.config.request_timeout * 3):
            resp = await self._client.sync(timeout=0, sync_filter=FIRST_SYNC_FILTER,
                                           full_state=True)  # fmt: skip
        if not isinstance(resp, SyncResponse):
            raise AdapterError(f"matrix: first sync failed: {resp}")
        self._since = resp.next_batch
        await self._cursors.set("next_batch", resp.next_batch)
        return False

    async def run(self) -> None:
        """Long-poll `/sync` until closed; back off on errors, honour 429."""
        backoff = 1.0
        full_state = True  # the first loop sync rebuilds room state (names, encryption)
        while not self._session.closed:
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
                self._session.online()
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
                        self._session.offline()
                        with contextlib.suppress(Exception):
                            await self._session.relogin()
                if isinstance(exc, (*NETWORK_ERRORS, SyncFailed)):
                    self._session.offline()
                self._log.warning("sync_retry", error=repr(exc)[:300], delay=delay)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 30.0)

    async def _handle_sync(self, resp: SyncResponse) -> None:
        for room_id, invite in resp.rooms.invite.items():
            await self._rooms.invited(room_id, invite)
        for room_id, info in resp.rooms.join.items():
            if not self._rooms.relayed(room_id):
                continue
            self._rooms.seen_in(room_id)
            events = [e.source for e in info.timeline.events]
            if any(e.source.get("type") == "m.room.member" for e in info.state) or any(
                e.get("type") == "m.room.member" for e in events
            ):
                self._rooms.members_changed(room_id)  # nio has the new members by now
            if (
                info.timeline.limited
                and info.timeline.prev_batch
                and room_id not in self._rooms.pending_join
            ):
                events = [*await self._backfill(room_id, info.timeline.prev_batch), *events]
            await self._handle_room(room_id, events)
            if self._rooms.is_encrypted(room_id):
                await self._rooms.encrypted_room(room_id)
        for room_id in resp.rooms.leave:
            self._rooms.left(room_id)

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
                "backfill_truncated", room=self._rooms.names.get(room_id, room_id),
                events=len(older),
            )  # fmt: skip
        older.reverse()
        return older

    async def _handle_room(self, room_id: str, events: list[dict[str, Any]]) -> None:
        pending = room_id in self._rooms.pending_join
        for source in events:
            if pending:
                if (
                    source.get("type") == "m.room.member"
                    and source.get("state_key") == self._session.identity
                    and isinstance(source.get("content"), dict)
                    and source["content"].get("membership") == "join"
                ):
                    pending = False
                    self._rooms.arrived(room_id)
                continue
            await self._handle_event(room_id, source)
        if pending and events:
            # Our join was not among these events: they all came after it.
            self._rooms.arrived(room_id)

    async def _handle_event(self, room_id: str, source: dict[str, Any]) -> None:
        etype = source.get("type")
        if etype in ("m.room.encryption", "m.room.encrypted") or self._rooms.is_encrypted(room_id):
            await self._rooms.encrypted_room(room_id)
            return
        sender = source.get("sender")
        if sender == self._session.identity or not isinstance(sender, str):
            return
        if any(fnmatch.fnmatchcase(sender, glob) for glob in self.config.ignore_users):
            return
        if not isinstance(source.get("event_id"), str):
            return
        # An event handed over before (a batch replayed after a restart) is recognised by
        # the relay by its remote id, in the same commit that would record it.
        parsed = parse_event(source, self.config.homeserver, link=self._media.linker())
        if parsed is None:
            return
        direct = room_id not in self._rooms.names
        if direct and parsed.action in ("join", "leave", "topic", "kick"):
            return  # a direct chat's membership is nobody's business but the archive's
        target = await self._cursors.event_id(parsed.target) if parsed.target else None
        reply = await self._cursors.event_id(parsed.reply_to) if parsed.reply_to else None
        thread = await self._cursors.event_id(parsed.thread) if parsed.thread else None
        event = to_core(
            parsed,
            event_id=new_event_id(),
            network=self.name,
            room=room_id if direct else self._rooms.names[room_id],
            sender_name=self._rooms.display_name(room_id, parsed.sender),  # a kick's member
            target=target,
            reply_to=reply,
            direct=direct,
            thread=thread,
        )
        if event is not None:
            await self._inbound().put(event)

    # --- appservice mode: events pushed by the homeserver ---------------------------------

    async def apply_pushed(self, events: list[dict[str, Any]], is_ghost: IsGhost) -> None:
        """One appservice transaction's events, in order, handed to the core like a sync
        batch's; returns once all are on disk. Ghosts' own events are the bridge's echoes."""
        for source in events:
            room_id = source.get("room_id")
            sender = source.get("sender")
            if not isinstance(room_id, str) or not isinstance(sender, str):
                continue
            if source.get("type") == "m.room.member":
                await self._pushed_member(room_id, source)
            if await self._pushed_portal(room_id, source, is_ghost):
                continue
            if not self._rooms.relayed(room_id) or is_ghost(sender):
                continue
            if room_id in self._rooms.pending_join:
                if _own_join(source, self._session.identity):
                    self._rooms.arrived(room_id)
                continue  # before our join: history, not relayed
            self._rooms.seen_in(room_id)
            if sender != self._session.identity:
                await self._rooms.learn_name(room_id, sender)
            await self._handle_event(room_id, source)
        await self._inbound().drain()

    async def _pushed_portal(self, room_id: str, source: dict[str, Any], is_ghost: IsGhost) -> bool:
        """A Matrix user's invite of a ghost (a new portal), or what they wrote in a
        portal: a direct message to the person the ghost stands for. True when the
        event belonged to a portal (handled here, or nothing to hand over)."""
        if self._portals is None or self._rooms.relayed(room_id):
            return False  # a bridged room (or a direct chat with the bot) is no portal
        sender = source["sender"]
        invited = source.get("state_key")
        content = source.get("content")
        if (
            source.get("type") == "m.room.member"
            and isinstance(invited, str)
            and is_ghost(invited)
            and not is_ghost(sender)
            and sender != self._session.identity  # the bot letting a ghost into a room
            and isinstance(content, dict)
            and content.get("membership") == "invite"
        ):
            if await self._portals.portal(room_id) is None:
                await self._portals.invited(room_id, invited, sender)
            return True
        portal = await self._portals.portal(room_id)
        if portal is None:
            return False
        # Only the portal's Matrix user speaks to the person: not the ghost (its own
        # words), nor anyone else the user let in.
        if sender == portal.user and source.get("type") == "m.room.message":
            await self._portal_message(room_id, source, portal)
        return True

    async def _portal_message(self, room_id: str, source: dict[str, Any], portal: Portal) -> None:
        """A message in a portal, as a direct message to the person on the other side.
        Edits, reactions and redactions stay in the portal (archived nowhere) for now."""
        if not isinstance(source.get("event_id"), str):
            return
        parsed = parse_event(source, self.config.homeserver, link=self._media.linker())
        if parsed is None or parsed.action != "message":
            return
        sender = portal.user
        await self._rooms.learn_name(room_id, sender)
        name = self._rooms.display_name(room_id, sender)
        event = to_core(parsed, event_id=new_event_id(), network=self.name, room=room_id,
                        sender_name=name, direct=True)  # fmt: skip
        if event is not None:
            origin = dataclasses.replace(event.origin, recipient=portal.peer)
            await self._inbound().put(dataclasses.replace(event, origin=origin))

    async def _pushed_member(self, room_id: str, source: dict[str, Any]) -> None:
        content = source.get("content")
        user = source.get("state_key")
        if not isinstance(content, dict) or not isinstance(user, str):
            return
        name = content.get("displayname")
        if isinstance(name, str) and name:
            self._rooms.remember_name(room_id, user, name)
        if user == self._session.identity and content.get("membership") == "invite":
            await self._rooms.invite_pushed(room_id)


def _own_join(source: dict[str, Any], own: str) -> bool:
    content = source.get("content")
    return (
        source.get("type") == "m.room.member"
        and source.get("state_key") == own
        and isinstance(content, dict)
        and content.get("membership") == "join"
    )


class SyncFailed(Exception):
    def __init__(self, resp: object) -> None:
        super().__init__(str(resp))
        self.status_code = getattr(resp, "status_code", None)
        ms = getattr(resp, "retry_after_ms", None)
        self.retry_after = ms / 1000 if isinstance(ms, int | float) and ms > 0 else None
