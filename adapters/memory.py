"""The in-memory reference adapter: the core's tests use it instead of mocks, and it is
the worked example for anyone writing an adapter (see docs/adapters.md).

A `MemoryHub` plays the server: rooms hold posted messages, every adapter attached to the
hub sees what is posted in the rooms it joined, including its own posts (as real servers
echo them), and the relay marker travels with each post like a custom field would on the
wire. Tests act as users with `hub.post(...)`. A post whose room is an adapter's nick is
a private message to that relay account (as an IRC query to its nick is); the relay's
answer is a post in the room named after the person it answers.

For tests that run the daemon in another process, two files stand in for the outside
world: `feed_file` (one message per line, read from a cursor kept in the state database,
so a restart continues where it stopped) and `delivery_file` (one JSON line per accepted
send, which also makes sends idempotent by `txn_id`, as Matrix transaction ids are).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from imbridge.adapter import (
    Capabilities,
    Cursors,
    EventSink,
    NetworkConfig,
    Outgoing,
    RateLimit,
)
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import (
    Delete,
    Edit,
    Event,
    EventId,
    Message,
    Origin,
    Reaction,
    RemoteId,
    Sender,
    new_event_id,
)
from imbridge.intake import Intake
from imbridge.sanitize import clean_nick, clean_text


class MemoryCapabilities(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    edits: bool = True
    deletes: bool = True
    replies: bool = True
    attachments: bool = True
    formatting: Literal["plain", "irc", "xhtml", "html"] = "html"
    max_text_bytes: int = 65536
    send_window: int = 1


class MemoryConfig(NetworkConfig):
    type: Literal["memory"] = "memory"
    nick: str = "imbridge"
    capabilities: MemoryCapabilities = MemoryCapabilities()
    feed_file: Path | None = None
    feed_room: str = "#feed"
    delivery_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Post:
    """A message as the hub's "server" holds it."""

    remote_id: RemoteId
    room: str
    sender: str
    text: str
    relayed: bool
    kind: str = "message"  # message | edit | delete | reaction | unreact (text: the key)
    target: RemoteId | None = None
    reply_to: RemoteId | None = None


@dataclass
class MemoryHub:
    """One in-process "server" several adapters (and test users) can share."""

    posts: list[Post] = field(default_factory=list)
    _members: list[MemoryAdapter] = field(default_factory=list)
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


class MemoryAdapter:
    """Implements the whole adapter contract in memory."""

    config_model: ClassVar[type[NetworkConfig]] = MemoryConfig
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=1_000_000, burst=1_000_000)

    def __init__(
        self, name: str, config: NetworkConfig, cursors: Cursors, hub: MemoryHub | None = None
    ) -> None:
        if not isinstance(config, MemoryConfig):
            raise TypeError("MemoryAdapter needs a MemoryConfig")
        self.name = name
        self.config = config
        self.cursors = cursors
        self.hub = hub or MemoryHub()
        caps = config.capabilities
        self.capabilities = Capabilities(
            edits=caps.edits,
            deletes=caps.deletes,
            replies=caps.replies,
            attachments=caps.attachments,
            formatting=caps.formatting,
            max_text_bytes=caps.max_text_bytes,
            send_window=caps.send_window,
        )
        self.joined: set[str] = set()
        self.sent: list[Outgoing] = []
        self.failures: deque[Exception] = deque()
        """Exceptions the next sends raise, one each: how tests simulate outages."""
        self.online = True
        self._sink: EventSink | None = None
        self._inbox: asyncio.Queue[Post] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivered: dict[str, RemoteId] = {}
        self._on_send: list[Callable[[Outgoing], None]] = []
        self.processed = 0
        """Posts this client has taken in and handed on (or ignored): tests wait on it."""

    @property
    def identity(self) -> str:
        return self.config.nick

    @property
    def connected(self) -> bool:
        return self._sink is not None and self.online

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self.hub._members.append(self)
        if self.config.delivery_file is not None and self.config.delivery_file.exists():
            for line in self.config.delivery_file.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._delivered[row["txn_id"]] = RemoteId(row["remote_id"])
        self._spawn(self._pump())
        if self.config.feed_file is not None:
            self._spawn(self._feed(self.config.feed_file))

    def _spawn(self, coro: asyncio.Future[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self, room: str) -> None:
        self.joined.add(room)

    def deliver(self, post: Post) -> None:
        """Called by the hub: a post in a joined room reached this client."""
        self._inbox.put_nowait(post)

    async def _pump(self) -> None:
        if self._sink is None:
            return
        intake = Intake(self._sink)
        try:
            while True:
                post = await self._inbox.get()
                await intake.put(await self.to_core(post), self._count)
        finally:
            await intake.aclose()

    def _count(self) -> None:
        self.processed += 1

    async def to_core(self, post: Post) -> Event | None:
        """Translation, as an adapter's translate.py would do it (here with lookups)."""
        direct = post.room == self.identity
        origin = Origin(
            network=self.name,
            room=post.sender if direct else post.room,
            sender=Sender(id=post.sender, name=clean_nick(post.sender)),
            remote_id=post.remote_id,
            relayed=post.relayed,
            direct=direct,
        )
        if post.kind != "message":  # an edit, delete or reaction: its target must be known
            target = await self.cursors.event_id(post.target) if post.target else None
            if target is None:
                return None
            if post.kind == "edit":
                return Edit(id=new_event_id(), origin=origin, target=target,
                            text=clean_text(post.text))  # fmt: skip
            if post.kind == "delete":
                return Delete(id=new_event_id(), origin=origin, target=target)
            return Reaction(id=new_event_id(), origin=origin, target=target,
                            key=post.text or "?", removed=post.kind == "unreact")  # fmt: skip
        reply: EventId | None = None
        if post.reply_to is not None:
            reply = await self.cursors.event_id(post.reply_to)
        return Message(id=new_event_id(), origin=origin, text=clean_text(post.text), reply_to=reply)

    async def _feed(self, path: Path) -> None:
        """Relays each line of `path` once, resuming after the last one the core took."""
        done = int(await self.cursors.get("feed_line") or 0)
        lines = (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
        if self._sink is None:
            return
        intake = Intake(self._sink)
        try:
            for number, text in enumerate(lines[done:], start=done + 1):
                origin = Origin(
                    network=self.name,
                    room=self.config.feed_room,
                    sender=Sender(id="feeder", name="feeder"),
                    remote_id=RemoteId(f"feed{number}"),
                )
                event = Message(id=new_event_id(), origin=origin, text=text)
                await intake.put(
                    event, functools.partial(self.cursors.set, "feed_line", str(number))
                )
            await intake.drain()
        finally:
            await intake.aclose()

    async def send(self, item: Outgoing) -> RemoteId:
        if not self.online:
            raise RetryableSendError("offline")
        if self.failures:
            raise self.failures.popleft()
        if item.room not in self.joined and not item.event.origin.direct:
            raise PermanentSendError(f"not in room {item.room}")
        if item.txn_id in self._delivered:
            return self._delivered[item.txn_id]  # a retry of an accepted send
        event = item.event
        if isinstance(event, Edit):
            post = self.hub.post(
                item.room, self.identity, event.text, relayed=True, kind="edit", target=item.target
            )
        elif isinstance(event, Delete):
            post = self.hub.post(
                item.room, self.identity, "", relayed=True, kind="delete", target=item.target
            )
        elif isinstance(event, Message):
            post = self.hub.post(
                item.room, self.identity, event.text, relayed=True, reply_to=item.reply_to
            )
        else:
            raise PermanentSendError(f"cannot send {type(event).__name__}")
        self.sent.append(item)
        self._delivered[item.txn_id] = post.remote_id
        if self.config.delivery_file is not None:
            with self.config.delivery_file.open("a", encoding="utf-8") as fh:
                fh.write(
                    json.dumps(
                        {
                            "txn_id": item.txn_id,
                            "remote_id": post.remote_id,
                            "room": item.room,
                            "text": event.text if isinstance(event, Message | Edit) else "",
                        }
                    )
                    + "\n"
                )
                fh.flush()
                os.fsync(fh.fileno())
        for cb in self._on_send:
            cb(item)
        return post.remote_id

    async def aclose(self) -> None:
        self._sink = None
        if self in self.hub._members:
            self.hub._members.remove(self)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
