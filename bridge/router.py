"""Which rooms form a gateway and who may send where.

A gateway fans an event out to every other room of it, never back to the origin; a room
with direction `in` only feeds the gateway, one with `out` only receives. Room names are
compared case-insensitively (IRC channels and XMPP JIDs are; Matrix ids never collide
that way). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imbridge.config.schema import Gateway, RoomRef
from imbridge.policy import Destination


@dataclass(frozen=True, slots=True)
class Route:
    gateway: str
    dest: Destination
    nick_format: str


def room_key(network: str, room: str) -> tuple[str, str]:
    return (network, room.casefold())


class Router:
    def __init__(self, gateways: Mapping[str, Gateway]) -> None:
        self._gateways = dict(gateways)
        self._index: dict[tuple[str, str], tuple[str, RoomRef]] = {}
        self._routes: dict[tuple[str, str], tuple[Route, ...]] = {}
        for name, gateway in gateways.items():
            for ref in gateway.rooms:
                self._index[room_key(ref.network, ref.room)] = (name, ref)
        for key, (name, ref) in self._index.items():
            gateway = self._gateways[name]
            if ref.direction == "out":
                self._routes[key] = ()
                continue
            self._routes[key] = tuple(
                Route(name, Destination(other.network, other.room), gateway.nick_format)
                for other in gateway.rooms
                if other is not ref and other.direction != "in"
            )

    def routes(self, network: str, room: str) -> tuple[Route, ...]:
        """Where an event from this room goes; empty for rooms outside every gateway."""
        return self._routes.get(room_key(network, room), ())

    def gateway_of(self, network: str, room: str) -> str | None:
        found = self._index.get(room_key(network, room))
        return found[0] if found else None

    def rooms(self, network: str) -> list[str]:
        """The rooms to join on `network`, as written in the config."""
        return [ref.room for (net, _), (_, ref) in self._index.items() if net == network]

    def membership_window(self, gateway: str) -> float | None:
        """Seconds of `gateway`'s membership debounce; None where it relays none."""
        found = self._gateways.get(gateway)
        return found.membership_window if found is not None and found.relay_membership else None

    def canonical_room(self, network: str, room: str) -> str:
        """The configured spelling of a room, so ids and the archive use one name."""
        found = self._index.get(room_key(network, room))
        return found[1].room if found else room
