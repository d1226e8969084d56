"""The memory adapter: the adapter contract over the in-process `MemoryHub`.

The worked example of docs/adapters.md: this class only answers the contract (start,
join, send, aclose) and names what the network can do; `session` attaches to the hub,
`receive` hands delivered posts to the core, `send` posts what the core sends, and
`proto` translates both ways without I/O. The adapter owns its tasks in one `TaskTree`.
What tests drive or read (`online`, `failures`, `sent`, `joined`, `processed`) is
reachable here, so a test needs no part's name.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import structlog

from imbridge.adapter import (
    Capabilities,
    Cursors,
    EventSink,
    NetworkConfig,
    Outgoing,
    RateLimit,
)
from imbridge.adapters.memory.config import MemoryConfig
from imbridge.adapters.memory.hub import MemoryHub
from imbridge.adapters.memory.proto.wire import Post
from imbridge.adapters.memory.receive import Receiver
from imbridge.adapters.memory.send import Transmitter
from imbridge.adapters.memory.session import Session
from imbridge.events import Event, RemoteId
from imbridge.tasks import TaskTree

log = structlog.get_logger("imbridge.adapters.memory")


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
            reactions=caps.reactions,
            edit_window=caps.edit_window,
            max_lines=caps.max_lines,
            line_bytes=caps.line_bytes,
            direct_sends=caps.direct_sends,
        )
        self._session = Session(self.hub)
        self._receiver = Receiver(name, config, cursors)
        self._transmitter = Transmitter(config, session=self._session, identity=config.nick)
        self._tasks: TaskTree | None = None

    # --- the contract ---------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.config.nick

    @property
    def connected(self) -> bool:
        return self._session.connected

    async def start(self, sink: EventSink) -> None:
        self._session.attach(self)
        self._transmitter.load_deliveries()
        tasks = self._tasks = await TaskTree(f"memory:{self.name}").__aenter__()
        tasks.spawn(self._receiver.run(sink), name=f"memory:{self.name}:read", network=self.name)
        if self.config.feed_file is not None:
            tasks.spawn(
                self._receiver.feed(sink, self.config.feed_file),
                name=f"memory:{self.name}:feed",
                network=self.name,
            )
        log.info("connected", network=self.name)

    async def join(self, room: str) -> None:
        self._session.join(room)
        log.info("joined", network=self.name, room=room)

    async def leave(self, room: str) -> None:
        self._session.leave(room)
        log.info("left", network=self.name, room=room)

    async def send(self, item: Outgoing) -> RemoteId:
        return await self._transmitter.send(item)

    async def aclose(self) -> None:
        self._session.detach(self)
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            await tasks.aclose()

    def address(self, word: str) -> str | None:
        """`nick@<this network>` names a person here (`DirectAddresses`)."""
        nick, at, network = word.rpartition("@")
        return nick if at and nick and network == self.name else None

    # --- the hub's side, and what tests drive -----------------------------------------

    def deliver(self, post: Post) -> None:
        """Called by the hub: a post in a joined room reached this client."""
        self._receiver.deliver(post)

    async def to_core(self, post: Post) -> Event | None:
        return await self._receiver.to_core(post)

    @property
    def joined(self) -> set[str]:
        return self._session.joined

    @property
    def online(self) -> bool:
        """Whether the simulated network is up; tests turn it off to stage an outage."""
        return self._session.online

    @online.setter
    def online(self, value: bool) -> None:
        self._session.online = value

    @property
    def sent(self) -> list[Outgoing]:
        return self._transmitter.sent

    @property
    def failures(self) -> deque[Exception]:
        """Exceptions the next sends raise, one each: how tests simulate outages."""
        return self._transmitter.failures

    @property
    def processed(self) -> int:
        """Posts this client has taken in and handed on (or ignored): tests wait on it."""
        return self._receiver.processed
