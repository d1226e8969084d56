"""The application-service API the homeserver calls (the spec's "Application Service
API"), served on the daemon's listener under `/networks/<network>/`.

* `PUT /_matrix/app/v1/transactions/{txnId}`: the events the bridge would otherwise
  sync. Each transaction is applied exactly once, across restarts: its events are on
  disk before the answer, the relay recognises an event it recorded by its Matrix id in
  the same commit that would record it again, and the transaction id is stored once all
  its events are (a retry of a stored one is answered at once without reading it).
  Transactions are applied one at a time, so a retry racing the first attempt waits.
* `GET /_matrix/app/v1/users/{userId}`: a ghost id is ours (registered on the spot).
* `POST /_matrix/app/v1/ping`: the homeserver checks it reaches us.

The homeserver proves itself with `hs_token`, as `Authorization: Bearer` or, from
homeservers before Matrix 1.4, the `access_token` query parameter; it is compared in
constant time. None: 401; wrong: 403, and nothing is read or changed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from imbridge.adapter import Cursors

APP = "/_matrix/app/v1"
TXN_MEMORY = 1000
"""Transaction ids remembered; homeservers retry only the latest few."""
MAX_TXN_BYTES = 32 * 1024 * 1024
"""A transaction holds up to 100 events (Synapse) of up to 64 KiB each, and a refused
one would be retried forever: the listener's 1 MiB default for bodies cannot apply."""

Apply = Callable[[list[dict[str, Any]]], Awaitable[None]]
KnowsUser = Callable[[str], Awaitable[bool]]


def _error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


class AppserviceApi:
    """Answers the homeserver; `apply` hands a transaction's events to the receiver and
    returns once they are on disk."""

    def __init__(
        self, hs_token: str, cursors: Cursors, *, apply: Apply, knows_user: KnowsUser, log: Any
    ) -> None:
        self._hs_token = hs_token.encode()
        self._cursors = cursors
        self._apply = apply
        self._knows_user = knows_user
        self._log = log
        self._done: deque[str] = deque(maxlen=TXN_MEMORY)
        self._lock = asyncio.Lock()
        self._loaded = False
        self.open = False
        """Whether transactions are taken: the adapter is started and its sink attached."""
        self.received = False
        """Whether a transaction has been applied since start (the homeserver sees us)."""

    async def load(self) -> None:
        self._done.extend(json.loads(await self._cursors.get("as_txns") or "[]"))
        self._loaded = True

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else request.query.get("access_token")
        if given is None:
            return _error(401, "M_UNAUTHORIZED", "hs_token required")
        if not hmac.compare_digest(given.encode(), self._hs_token):
            self._log.warning("appservice_bad_token", peer=request.remote)
            return _error(403, "M_FORBIDDEN", "bad hs_token")
        return None

    async def handle(  # noqa: PLR0911 - one answer per endpoint
        self, request: web.Request, path: str
    ) -> web.StreamResponse:
        if not path.startswith(APP + "/"):
            return _error(404, "M_UNRECOGNIZED", "unknown endpoint")
        denied = self._auth(request)
        if denied is not None:
            return denied
        what, _, arg = path[len(APP) + 1 :].partition("/")
        match (request.method, what):
            case ("PUT", "transactions") if arg:
                return await self._transaction(request, unquote(arg))
            case ("GET", "users") if arg:
                known = await self._knows_user(unquote(arg))
                return web.json_response({}) if known else _error(404, "M_NOT_FOUND", "no user")
            case ("GET", "rooms"):
                return _error(404, "M_NOT_FOUND", "no room aliases here")
            case ("POST", "ping"):
                return web.json_response({})
            case _:
                return _error(404, "M_UNRECOGNIZED", "unknown endpoint")

    async def _transaction(self, request: web.Request, txn_id: str) -> web.Response:
        if not self.open or not self._loaded:
            # The homeserver keeps the transaction and retries it.
            return _error(503, "M_UNKNOWN", "not started")
        events = await _events(request)
        if isinstance(events, web.Response):
            return events
        async with self._lock:
            if txn_id in self._done:
                return web.json_response({})
            try:
                await self._apply(events)
            except Exception as exc:  # noqa: BLE001 - the homeserver retries the transaction
                self._log.warning("appservice_txn_failed", txn=txn_id, error=repr(exc)[:300])
                return _error(500, "M_UNKNOWN", "not applied; retry")
            self._done.append(txn_id)
            await self._cursors.set("as_txns", json.dumps(list(self._done)))
            self.received = True
        return web.json_response({})


async def _events(request: web.Request) -> list[dict[str, Any]] | web.Response:
    """A transaction body's events, or the error answer."""
    if (request.content_length or 0) > MAX_TXN_BYTES:
        return _error(413, "M_TOO_LARGE", "transaction too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_TXN_BYTES:
            return _error(413, "M_TOO_LARGE", "transaction too large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except ValueError:
        return _error(400, "M_NOT_JSON", "body is not JSON")
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return _error(400, "M_BAD_JSON", "events must be a list")
    return [e for e in events if isinstance(e, dict)]
