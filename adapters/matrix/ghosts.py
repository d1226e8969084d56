"""Ghosts: the Matrix users remote senders speak as in appservice mode.

A ghost is registered on first use (`m.login.application_service`), shows the remote
nick as its display name, and is in a room before its first message there (the bot
invites it when the room is not open). It sends with `user_id=` masquerading (the spec's
"Identity assertion") and the outbox's stable txn id in `PUT …/send/{type}/{txnId}`, so
a retry is deduplicated by the homeserver instead of posted twice. What each ghost has
done this run is remembered in memory only: registering and joining again after a
restart is harmless (the homeserver answers "in use" and "already joined").
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp

from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import RemoteId

from .proto.ghostnames import display_name, ghost_id, ghost_localpart

CS = "/_matrix/client/v3"


def _q(part: str) -> str:
    """One path segment: ids hold `:`, `!`, `$` and, in room ids of version 12, `/`."""
    return quote(part, safe="")


class Ghosts:
    """Registration, profile, membership and sending of ghosts; the only writer of what
    it knows about them."""

    def __init__(
        self,
        *,
        homeserver: str,
        as_token: str,
        bot: str,
        server: str,
        prefix: str,
        timeout: float,
        log: Any,
    ) -> None:
        self._homeserver = homeserver
        self._token = as_token
        self._bot = bot
        self._server = server
        self._prefix = prefix
        self._timeout = timeout
        self._log = log
        self._http: aiohttp.ClientSession | None = None
        self._registered: set[str] = set()
        self._names: dict[str, str] = {}
        self._in_room: set[tuple[str, str]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def user_id(self, network: str, sender: str) -> str:
        return ghost_id(self._prefix, network, sender, self._server)

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def ready(self, network: str, sender: str, name: str, room_id: str) -> str:
        """The ghost of `sender`, registered, named `name` and in `room_id`."""
        user = await self.prepare(network, sender, name)
        async with self._locks.setdefault(user, asyncio.Lock()):
            if (room_id, user) not in self._in_room:
                await self._join(user, room_id)
                self._in_room.add((room_id, user))
        return user

    async def prepare(self, network: str, sender: str, name: str) -> str:
        """The ghost of `sender`, registered and named `name`, in no room yet."""
        user = self.user_id(network, sender)
        async with self._locks.setdefault(user, asyncio.Lock()):
            if user not in self._registered:
                await self.register(ghost_localpart(self._prefix, network, sender))
                self._registered.add(user)
            shown = display_name(name)
            if self._names.get(user) != shown:
                await self._call("PUT", f"/profile/{_q(user)}/displayname",
                                 {"displayname": shown}, as_user=user)  # fmt: skip
                self._names[user] = shown
        return user

    async def create_portal(self, ghost: str, invitee: str) -> str:
        """A new private room created by `ghost`, `invitee` invited to it as to a direct
        chat (`is_direct`, so clients list it with their people, not their rooms)."""
        answer = await self._call("POST", "/createRoom", {
            "preset": "trusted_private_chat", "is_direct": True, "invite": [invitee],
        }, as_user=ghost)  # fmt: skip
        room_id = answer.get("room_id")
        if not isinstance(room_id, str):
            raise RetryableSendError("matrix: createRoom answered no room_id")
        self._in_room.add((room_id, ghost))
        return room_id

    async def join(self, ghost: str, room_id: str) -> None:
        """`ghost` accepts an invite to `room_id`."""
        await self._call("POST", f"/join/{_q(room_id)}", {}, as_user=ghost)
        self._in_room.add((room_id, ghost))

    async def leave(self, ghost: str, room_id: str) -> None:
        """`ghost` declines an invite to `room_id` (or leaves it)."""
        await self._raw("POST", f"/rooms/{_q(room_id)}/leave", {}, as_user=ghost)
        self._in_room.discard((room_id, ghost))

    async def ping(self, app_id: str) -> int:
        """`POST /_matrix/client/v1/appservice/{id}/ping` (Matrix 1.7): 200 once the
        homeserver reached the bridge, 404 from a homeserver without the endpoint."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = f"{self._homeserver}/_matrix/client/v1/appservice/{_q(app_id)}/ping"
        headers = {"Authorization": f"Bearer {self._token}"}
        async with self._http.post(url, json={}, headers=headers) as resp:
            return resp.status

    async def register(self, localpart: str) -> None:
        status, body = await self._raw("POST", "/register", {
            "type": "m.login.application_service", "username": localpart,
            "inhibit_login": True,
        })  # fmt: skip
        if status == 200 or body.get("errcode") == "M_USER_IN_USE":
            return
        _raise_for(status, body, "register")

    async def _join(self, user: str, room_id: str) -> None:
        path = f"/join/{_q(room_id)}"
        status, body = await self._raw("POST", path, {}, as_user=user)
        if status == 200:
            return
        if status != 403:
            _raise_for(status, body, "join")
        # Not an open room: the bot, which is in it, invites the ghost first.
        status, body = await self._raw("POST", f"/rooms/{_q(room_id)}/invite", {"user_id": user})
        if status != 200 and "already in the room" not in str(body.get("error", "")):
            _raise_for(status, body, "invite")
        await self._call("POST", path, {}, as_user=user)

    async def send(
        self, user: str, room_id: str, event_type: str, content: dict[str, Any], txn_id: str
    ) -> RemoteId:
        path = f"/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}"
        return await self._post_as(user, room_id, path, content)

    async def redact(self, user: str, room_id: str, target: str, txn_id: str) -> RemoteId:
        path = f"/rooms/{_q(room_id)}/redact/{_q(target)}/{_q(txn_id)}"
        return await self._post_as(user, room_id, path, {})

    async def _post_as(
        self, user: str, room_id: str, path: str, content: dict[str, Any]
    ) -> RemoteId:
        status, body = await self._raw("PUT", path, content, as_user=user)
        if status == 200 and isinstance(body.get("event_id"), str):
            return RemoteId(body["event_id"])
        if status == 403 and (room_id, user) in self._in_room:
            # Kicked since it joined: the retry joins it again (and fails for good if
            # it was banned, when the invite is refused).
            self._in_room.discard((room_id, user))
            raise RetryableSendError(f"matrix: {user} is no longer in {room_id}")
        _raise_for(status, body, "send")

    async def _call(
        self, method: str, path: str, body: dict[str, Any], *, as_user: str | None = None
    ) -> dict[str, Any]:
        status, answer = await self._raw(method, path, body, as_user=as_user)
        if status != 200:
            _raise_for(status, answer, path.rsplit("/", 3)[0])
        return answer

    async def _raw(
        self, method: str, path: str, body: dict[str, Any], *, as_user: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        params = {"user_id": as_user} if as_user is not None else {}
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.request(
                    method, self._homeserver + CS + path, json=body, params=params,
                    headers=headers, allow_redirects=False,
                ) as resp,
            ):  # fmt: skip
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = {}
                return resp.status, answer if isinstance(answer, dict) else {}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableSendError(f"matrix: {type(exc).__name__}: {exc}") from exc


def _raise_for(status: int, body: dict[str, Any], what: str) -> NoReturn:
    """A homeserver error as the outbox's two kinds of failure."""
    code = body.get("errcode")
    msg = f"matrix {what}: HTTP {status} {code or ''} {body.get('error', '')}".rstrip()
    if status == 429 or code == "M_LIMIT_EXCEEDED":
        ms = body.get("retry_after_ms")
        retry = ms / 1000 if isinstance(ms, int | float) and ms > 0 else 1.0
        raise RetryableSendError(msg, retry_after=retry)
    if status >= 500 or code == "M_UNKNOWN_TOKEN":
        raise RetryableSendError(msg)
    raise PermanentSendError(msg)
