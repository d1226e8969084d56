"""The adapter's connection to the hub: attached or not, the rooms it joined, and
whether the simulated network is up (`online`, which tests turn off to stage an outage)."""

from __future__ import annotations

from imbridge.adapters.memory.hub import Member, MemoryHub


class Session:
    """Attachment to the hub; the only writer of it."""

    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.online = True
        self.joined: set[str] = set()
        self._attached = False

    @property
    def connected(self) -> bool:
        return self._attached and self.online

    def attach(self, member: Member) -> None:
        self.hub.attach(member)
        self._attached = True

    def detach(self, member: Member) -> None:
        self._attached = False
        self.hub.detach(member)

    def join(self, room: str) -> None:
        self.joined.add(room)

    def leave(self, room: str) -> None:
        self.joined.discard(room)
