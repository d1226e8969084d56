"""Items out, to the hub: each rendered item becomes one post (`proto.translate.to_wire`).

A delivery file stands in for a server a daemon in another process writes to: one JSON
line per accepted send, which also makes sends idempotent by `txn_id` across restarts,
as Matrix transaction ids are. `failures` lets a test make the next sends fail, one
exception each, as a flaky server would."""

from __future__ import annotations

import json
import os
from collections import deque

from imbridge.adapter import Outgoing
from imbridge.adapters.memory.config import MemoryConfig
from imbridge.adapters.memory.proto.translate import NotSendable, to_wire
from imbridge.adapters.memory.session import Session
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import Edit, Message, RemoteId


class Transmitter:
    """`send` of the adapter contract, and what it was sent."""

    def __init__(self, config: MemoryConfig, *, session: Session, identity: str) -> None:
        self.config = config
        self._session = session
        self._identity = identity
        self.sent: list[Outgoing] = []
        self.failures: deque[Exception] = deque()
        """Exceptions the next sends raise, one each: how tests simulate outages."""
        self._delivered: dict[str, RemoteId] = {}

    def load_deliveries(self) -> None:
        """The sends accepted by an earlier run, so a retry is answered, not re-posted."""
        path = self.config.delivery_file
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._delivered[row["txn_id"]] = RemoteId(row["remote_id"])

    async def send(self, item: Outgoing) -> RemoteId:
        if not self._session.online:
            raise RetryableSendError("offline")
        if self.failures:
            raise self.failures.popleft()
        if item.room not in self._session.joined and not item.event.origin.direct:
            raise PermanentSendError(f"not in room {item.room}")
        if item.txn_id in self._delivered:
            return self._delivered[item.txn_id]  # a retry of an accepted send
        try:
            wire = to_wire(item)
        except NotSendable as exc:
            raise PermanentSendError(str(exc)) from None
        post = self._session.hub.post(
            wire.room, self._identity, wire.text, relayed=True, kind=wire.kind,
            target=wire.target, reply_to=wire.reply_to,
        )  # fmt: skip
        self.sent.append(item)
        self._delivered[item.txn_id] = post.remote_id
        if self.config.delivery_file is not None:
            self._record(item, post.remote_id)
        return post.remote_id

    def _record(self, item: Outgoing, remote_id: RemoteId) -> None:
        assert self.config.delivery_file is not None  # noqa: S101 - checked by the caller
        event = item.event
        with self.config.delivery_file.open("a", encoding="utf-8") as fh:
            fh.write(
                json.dumps(
                    {
                        "txn_id": item.txn_id,
                        "remote_id": remote_id,
                        "room": item.room,
                        "text": event.text if isinstance(event, Message | Edit) else "",
                    }
                )
                + "\n"
            )
            fh.flush()
            os.fsync(fh.fileno())
