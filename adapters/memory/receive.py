"""Posts in, to the core: each post the hub delivers is translated (`proto.translate`)
and handed to the sink in order, with its target and reply resolved through the
network's cursors. A feed file stands in for a server a daemon in another process reads:
one message per line, read from a cursor kept in the state database, so a restart
continues where it stopped."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from imbridge.adapter import Cursors, EventSink
from imbridge.adapters.memory.config import MemoryConfig
from imbridge.adapters.memory.proto.translate import Context, feed_to_core, to_core
from imbridge.adapters.memory.proto.wire import Post
from imbridge.events import Event, new_event_id
from imbridge.intake import Intake


class Receiver:
    """The inbox of delivered posts and the tasks that empty it."""

    def __init__(self, name: str, config: MemoryConfig, cursors: Cursors) -> None:
        self.name = name
        self.config = config
        self.cursors = cursors
        self._inbox: asyncio.Queue[Post] = asyncio.Queue()
        self.processed = 0
        """Posts this client has taken in and handed on (or ignored): tests wait on it."""

    def deliver(self, post: Post) -> None:
        """Called by the hub: a post in a joined room reached this client."""
        self._inbox.put_nowait(post)

    async def run(self, sink: EventSink) -> None:
        intake = Intake(sink)
        try:
            while True:
                post = await self._inbox.get()
                await intake.put(await self.to_core(post), self._count)
        finally:
            await intake.aclose()

    def _count(self) -> None:
        self.processed += 1

    async def to_core(self, post: Post) -> Event | None:
        """The ids the translation needs, looked up; then the translation."""
        target = reply = None
        if post.kind != "message":
            target = await self.cursors.event_id(post.target) if post.target else None
        elif post.reply_to is not None:
            reply = await self.cursors.event_id(post.reply_to)
        ctx = Context(network=self.name, identity=self.config.nick, event_id=new_event_id(),
                      target=target, reply_to=reply)  # fmt: skip
        return to_core(post, ctx)

    async def feed(self, sink: EventSink, path: Path) -> None:
        """Relays each line of `path` once, resuming after the last one the core took."""
        done = int(await self.cursors.get("feed_line") or 0)
        lines = (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
        intake = Intake(sink)
        try:
            for number, text in enumerate(lines[done:], start=done + 1):
                event = feed_to_core(
                    number, text, network=self.name, room=self.config.feed_room,
                    event_id=new_event_id(),
                )  # fmt: skip
                await intake.put(
                    event, functools.partial(self.cursors.set, "feed_line", str(number))
                )
            await intake.drain()
        finally:
            await intake.aclose()
