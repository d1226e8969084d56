"""The channels of the relay: those the core asked for, those the server confirmed it is
in, and the JOINs still waiting for that confirmation.

A channel the core asked for is joined whenever the relay is connected: at once, again
after every reconnect, and after a kick when `rejoin_on_kick` says so. A JOIN resolves
only on the server's own answer (the relay's JOIN, or one of the RFC 2812 errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.connection import Link
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.names import irc_lower
from imbridge.adapters.irc.send import Writer
from imbridge.errors import AdapterError

log = structlog.get_logger(__name__)

# RFC 2812 §5.2 errors of a JOIN: channel full, invite only, banned, bad key, no such
# channel, too many channels, needs a registered nick.
JOIN_ERRORS = frozenset({"403", "405", "471", "473", "474", "475", "477", "489"})

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class Rooms:
    """Joins, and what the server said about them."""

    def __init__(
        self, name: str, config: IrcConfig, *, link: Link, writer: Writer, spawn: Spawn
    ) -> None:
        self.name = name
        self.config = config
        self._link = link
        self._writer = writer
        self._spawn = spawn
        self.rooms: dict[str, str] = {}  # folded → as the core named it
        self.reset()

    def reset(self) -> None:
        """Nothing joined, no JOIN pending: a fresh run (`start` after `aclose`)."""
        self.joined: set[str] = set()
        self._waiters: dict[str, asyncio.Future[None]] = {}

    async def join(self, folded: str) -> None:
        """JOINs `rooms[folded]` (once, however many callers wait) and returns when the
        server confirms; AdapterError when it refuses or does not answer."""
        room = self.rooms[folded]
        waiter = self._waiters.get(folded)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[folded] = waiter
            key = self.config.key_for(room)
            line = wire.build("JOIN", room, key) if key else wire.build("JOIN", room)
            self._writer.put(line)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            raise AdapterError(f"{self.name}: no answer to JOIN {room}") from None
        log.info("joined", network=self.name, room=room)

    def leave(self, folded: str) -> None:
        """Forgets `folded` (no rejoin, no more events from it) and PARTs it if in it."""
        room = self.rooms.pop(folded, None)
        if room is None:
            return
        waiter = self._waiters.pop(folded, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(AdapterError(f"{self.name}: left {room} before joining it"))
            waiter.exception()
        if folded in self.joined:
            self.joined.discard(folded)
            if self._link.connected:
                self._writer.put(wire.build("PART", room))
        log.info("left", network=self.name, room=room)

    async def rejoin_all(self) -> None:
        """After registration: every room not joined yet; a refusal is logged, not fatal."""
        rooms = [f for f in self.rooms if f not in self.joined]
        results = await asyncio.gather(*(self.join(f) for f in rooms), return_exceptions=True)
        for folded, result in zip(rooms, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "join_failed", network=self.name, room=self.rooms[folded], reason=str(result)
                )

    # --- what the server said ---------------------------------------------------------

    def self_joined(self, folded: str) -> None:
        self.joined.add(folded)
        waiter = self._waiters.get(folded)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def join_refused(self, line: wire.Line) -> None:
        """One of `JOIN_ERRORS`: the JOIN waiting for that channel fails with its reason."""
        waiter = self._waiters.get(irc_lower(line.param(1)))
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                AdapterError(f"cannot join {line.param(1)}: {line.command} {line.params[-1]}")
            )

    def kicked(self, line: wire.Line) -> None:
        folded = irc_lower(line.param(0))
        self.joined.discard(folded)
        log.warning(
            "kicked", network=self.name, room=line.param(0), by=line.nick, reason=line.param(2)
        )
        if self.config.rejoin_on_kick and folded in self.rooms:
            self._spawn(self._rejoin_later(folded), "rejoin")

    async def _rejoin_later(self, folded: str) -> None:
        await asyncio.sleep(self.config.rejoin_delay)
        if self._link.connected and folded not in self.joined:
            try:
                await self.join(folded)
            except AdapterError as exc:
                log.error(
                    "join_failed", network=self.name, room=self.rooms[folded], reason=str(exc)
                )

    def fail_all(self, error: AdapterError) -> None:
        """Every pending JOIN fails with `error` (the connection or the adapter closed)."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(AdapterError(str(error)))
                waiter.exception()
        self._waiters.clear()
