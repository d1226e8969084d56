"""Sending reactions to IRC: a `+draft/react` TAGMSG where the server takes client tags
and the copy's msgid is known, else one gathered line per message and window
(`proto.reactions`).

The window never loses a reaction: each reaction's send returns only once the line that
says it was delivered, so its outbox item is confirmed with that line (or, if the line
fails, every reaction in it is retried). The first reaction to a message opens the
window and, when it closes, sends the line for all that joined it; no task of its own,
so nothing outlives the send that owns it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from imbridge.adapter import Outgoing
from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.connection import Link
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.names import irc_lower
from imbridge.adapters.irc.proto.reactions import (
    Gathered,
    gathered,
    is_msgid,
    summary_line,
    tagmsg,
)
from imbridge.adapters.irc.proto.translate import RELAY_TAG
from imbridge.adapters.irc.rooms import Rooms
from imbridge.adapters.irc.send import Writer
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import Reaction, RemoteId


@dataclass(slots=True)
class _Window:
    """The reactions to one message gathered while its window is open."""

    excerpt: str
    entries: list[Gathered] = field(default_factory=list)
    done: asyncio.Future[RemoteId] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ReactionSender:
    """`send` for Reaction items of one IRC connection."""

    def __init__(
        self, name: str, config: IrcConfig, *, link: Link, rooms: Rooms, writer: Writer
    ) -> None:
        self.name = name
        self.config = config
        self._link = link
        self._rooms = rooms
        self._writer = writer
        self._windows: dict[tuple[str, str], _Window] = {}

    async def send(self, item: Outgoing, event: Reaction) -> RemoteId:
        if not self._link.connected:
            raise RetryableSendError(f"{self.name}: not connected")
        folded = irc_lower(item.room)
        if folded not in self._rooms.joined:
            raise RetryableSendError(f"{self.name}: not in {item.room}")
        tags = self._link.enabled("message-tags")
        if tags and is_msgid(item.target):
            line = tagmsg(event, item.room, str(item.target), {RELAY_TAG: ""})
            await self._write(line, folded, echo=False)
            return RemoteId(item.txn_id)
        if event.removed:
            return RemoteId("")  # a line saying someone took a reaction back is noise
        return await self._gather(item, event, folded, tags=tags)

    async def _gather(
        self, item: Outgoing, event: Reaction, folded: str, *, tags: bool
    ) -> RemoteId:
        key = (folded, str(event.target))  # the message, even where it has no msgid
        window = self._windows.get(key)
        if window is not None:  # open: this reaction is said by its line
            window.entries.append(gathered(event))
            return await asyncio.shield(window.done)
        window = self._windows[key] = _Window(event.excerpt, [gathered(event)])
        try:
            await asyncio.sleep(self.config.reaction_window)
            del self._windows[key]  # closed: a later reaction opens the next one
            marked = {RELAY_TAG: ""} if tags else None
            line = summary_line(
                window.entries, window.excerpt, item.room, mask=self._link.mask, tags=marked
            )
            echo = self._link.enabled("echo-message")
            ids = await self._write(line, folded, echo=echo)
        except BaseException as exc:
            if self._windows.get(key) is window:
                del self._windows[key]
            if not window.done.done():
                failure = exc if isinstance(exc, Exception) else RetryableSendError("cancelled")
                window.done.set_exception(failure)
                window.done.exception()  # retrieved: a window with no other reaction
            raise
        said = RemoteId(next((i for i in ids if i), item.txn_id))
        window.done.set_result(said)
        return said

    async def _write(self, line: str, folded: str, *, echo: bool) -> list[str]:
        s = self._link.current
        try:
            return await self._writer.send(
                [line], echo=echo, target=folded, conn=s.conn if s is not None else None,
                timeout=self.config.send_timeout,
            )  # fmt: skip
        except wire.UnsafeLine as exc:
            raise PermanentSendError(f"{self.name}: {exc}") from None
