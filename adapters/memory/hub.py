"""The in-process "server" several memory adapters (and test users) share: it numbers
posts, keeps them, and hands each to every member that joined its room, or that it is
addressed to (a private message to the relay's nick)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol

from imbridge.adapters.memory.proto.wire import Post
from imbridge.events import RemoteId


class Member(Protocol):
    """A client attached to the hub."""

    @property
    def joined(self) -> set[str]: ...
    @property
    def identity(self) -> str: ...
    def deliver(self, post: Post) -> None: ...


@dataclass
class MemoryHub:
    """One in-process "server" several adapters (and test users) can share."""

    posts: list[Post] = field(default_factory=list)
    _members: list[Member] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def post(
        self,
        room: str,
        sender: str,
        text: str,
        *,
        relayed: bool = False,
        kind: str = "message",
        target: RemoteId | None = None,
        reply_to: RemoteId | None = None,
    ) -> Post:
        post = Post(
            RemoteId(f"m{next(self._ids)}"), room, sender, text, relayed, kind, target, reply_to
        )
        self.posts.append(post)
        for member in list(self._members):
            if room in member.joined or room == member.identity:
                member.deliver(post)
        return post

    def in_room(self, room: str) -> list[Post]:
        return [p for p in self.posts if p.room == room]

    def texts(self, room: str) -> list[str]:
        """The text of each message posted in `room`, in order (not edits, deletes or
        reactions): what a reader of the room sees as lines."""
        return [p.text for p in self.in_room(room) if p.kind == "message"]

    def attach(self, member: Member) -> None:
        self._members.append(member)

    def detach(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)
