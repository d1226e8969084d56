"""Who speaks for the relay in a room: the relay's one occupant (client mode), or a
puppet occupant per relayed sender (component mode, `component.Component`).

The send and receive parts ask this, not the mode: which JID an item is sent from,
whether an occupant is one of the relay's own (its messages then only confirm a
delivery, and its presence is no Join or Leave), and what must happen in a room before
an item can be said there.
"""

from __future__ import annotations

from typing import Any, Protocol

from imbridge.adapter import Outgoing
from imbridge.events import Recipient

from .rooms import Room


class Voices(Protocol):
    def speaker(self, item: Outgoing) -> str | None:
        """The JID an item is sent from; None: the session's own."""
        ...

    def speaks_for(self, room: Room, nick: str, real_jid: str | None) -> bool:
        """Whether occupant `nick` is one of the relay's own besides its listener."""
        ...

    async def enter(self, client: Any, room: Room, item: Outgoing) -> None:
        """Makes sure whoever says `item` is in `room`; raises as a send does."""
        ...

    def leave_all(self, client: Any) -> None:
        """Takes the relay's occupants out of every room before the stream closes, where
        its end would not (a component's occupants outlive its stream)."""
        ...

    def leave(self, client: Any, room: Room) -> None:
        """Takes the relay's occupants out of `room` (a reload removed it)."""
        ...

    def addressee(self, to: str) -> Recipient | None:
        """The person elsewhere a private message to the bare JID `to` is for: the one
        a puppet stands for; None for the relay's own JID."""
        ...


class OwnVoice:
    """Client mode: the relay's account says everything, from its one occupant."""

    def speaker(self, item: Outgoing) -> str | None:
        return None

    def speaks_for(self, room: Room, nick: str, real_jid: str | None) -> bool:
        return False

    async def enter(self, client: Any, room: Room, item: Outgoing) -> None:
        return None

    def leave_all(self, client: Any) -> None:
        return None

    def addressee(self, to: str) -> Recipient | None:
        return None

    def leave(self, client: Any, room: Room) -> None:
        client.make_presence(pto=f"{room.jid}/{room.nick}", ptype="unavailable").send()
