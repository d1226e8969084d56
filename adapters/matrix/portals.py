"""Portals: the Matrix rooms where a Matrix user and a person on another network write to
each other directly, in appservice mode.

A portal holds the Matrix user and the ghost standing for the other person. It is
opened either way: a direct message from that person (an IRC user naming a Matrix user
to the relay, an XMPP user writing to a puppet) makes their ghost create the room and
invite the Matrix user; or a Matrix user invites a ghost to a room of their own, which
the ghost joins. What the Matrix user writes there is a direct message to the person the
ghost stands for (`Origin.recipient`); what that person writes back is posted there by
the ghost.

Each portal is kept in the network's cursor slot (`portal:<room id>`, and the pair's
index `portal-pair:<ghost> <user>`), so the next message of the same two people reuses
it after a restart. Which person a ghost stands for is kept likewise
(`ghost:<user id>`), written the first time the ghost speaks: an invite to a ghost the
bridge never used has no one to reach and is declined.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Any

from imbridge.adapter import Cursors
from imbridge.events import Recipient

from .ghosts import Ghosts


@dataclass(frozen=True, slots=True)
class Portal:
    room_id: str
    ghost: str
    """The ghost standing for the person on the other network."""
    user: str
    """The Matrix user."""
    network: str
    address: str
    """Where that person gets a direct message on `network` (a nick, a JID)."""

    @property
    def peer(self) -> Recipient:
        return Recipient(network=self.network, user=self.address)


class Portals:
    """The portals of one Matrix network; the only writer of their records."""

    def __init__(self, cursors: Cursors, ghosts: Ghosts, *, log: Any) -> None:
        self._cursors = cursors
        self._ghosts = ghosts
        self._log = log
        self._by_room: dict[str, Portal] = {}
        self._stands_for: dict[str, Recipient] = {}
        self._lock = asyncio.Lock()

    async def portal(self, room_id: str) -> Portal | None:
        """The portal `room_id` is, if it is one."""
        found = self._by_room.get(room_id)
        if found is None:
            raw = await self._cursors.get(f"portal:{room_id}")
            if raw is not None:
                found = self._by_room[room_id] = Portal(**json.loads(raw))
        return found

    async def remember_ghost(self, ghost: str, person: Recipient, *, keep: bool = False) -> None:
        """Notes whom `ghost` stands for, so an invite to it can reach them. With `keep`
        (what a room message says: the sender's id), an address learnt from a direct
        message (where their answers go) is kept instead."""
        if self._stands_for.get(ghost) == person:
            return
        if keep and await self._person(ghost) is not None:
            return
        self._stands_for[ghost] = person
        value = json.dumps({"network": person.network, "user": person.user})
        await self._cursors.set(f"ghost:{ghost}", value)

    async def _person(self, ghost: str) -> Recipient | None:
        person = self._stands_for.get(ghost)
        if person is None:
            raw = await self._cursors.get(f"ghost:{ghost}")
            if raw is not None:
                data = json.loads(raw)
                person = self._stands_for[ghost] = Recipient(
                    network=data["network"], user=data["user"]
                )
        return person

    async def open(self, ghost: str, user: str, person: Recipient) -> Portal:
        """The portal of `ghost` and `user`, created by the ghost (inviting the user)
        the first time they exchange a direct message."""
        async with self._lock:
            room_id = await self._cursors.get(f"portal-pair:{ghost} {user}")
            if room_id is not None:
                found = await self.portal(room_id)
                if found is not None:
                    return found
            room_id = await self._ghosts.create_portal(ghost, user)
            self._log.info("portal_opened", room_id=room_id, ghost=ghost, user=user)
            return await self._keep(Portal(room_id, ghost, user, person.network, person.user))

    async def invited(self, room_id: str, ghost: str, inviter: str) -> Portal | None:
        """A Matrix user invited a ghost: the room becomes their portal, the ghost joins.
        None (and the invite declined) for a ghost that stands for no one known."""
        person = await self._person(ghost)
        if person is None:
            self._log.info("portal_invite_unknown_ghost", room_id=room_id, ghost=ghost)
            await self._ghosts.leave(ghost, room_id)
            return None
        await self._ghosts.join(ghost, room_id)
        self._log.info("portal_opened", room_id=room_id, ghost=ghost, user=inviter)
        return await self._keep(Portal(room_id, ghost, inviter, person.network, person.user))

    async def _keep(self, portal: Portal) -> Portal:
        self._by_room[portal.room_id] = portal
        await self._cursors.set(f"portal:{portal.room_id}", json.dumps(asdict(portal)))
        await self._cursors.set(f"portal-pair:{portal.ghost} {portal.user}", portal.room_id)
        return portal


__all__ = ["Portal", "Portals"]
