"""Outgoing: an item translated to lines (`proto.translate.to_wire`), written by the one
writer of the connection, and returned once the server confirmed them.

Invariants: every line after registration goes through the acknowledgement window and
the token buckets (`floodcontrol`), in the order it was queued; a line's future resolves
only once it counts as delivered (echoed back by the server with `echo-message`, else
answered by a PONG to a PING mark written after it), and whatever is queued or written
but unconfirmed when the connection drops fails with RetryableSendError, so the outbox
sends it again: no line is dropped silently.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from imbridge.adapter import Outgoing
from imbridge.adapters.irc.config import FloodConfig, IrcConfig
from imbridge.adapters.irc.connection import Connection, ConnectionState, Link
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.floodcontrol import AckWindow
from imbridge.adapters.irc.proto.mentions import with_nicks
from imbridge.adapters.irc.proto.names import CHANNEL_PREFIXES, irc_lower
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.proto.translate import RELAY_TAG, NotSendable, to_wire
from imbridge.errors import AdapterError, PermanentSendError, RetryableSendError
from imbridge.events import Edit, Message, RemoteId
from imbridge.ratelimit import TokenBucket

if TYPE_CHECKING:
    from imbridge.adapters.irc.rooms import Rooms

log = structlog.get_logger(__name__)

_WINDOW_FULL = -1.0


@dataclass(eq=False, slots=True)
class OutLine:
    """One line waiting for the writer; `future` resolves when it counts as delivered."""

    line: str
    echo: bool = False
    target: str = ""
    future: asyncio.Future[str] | None = None
    cancelled: bool = False


class Writer:
    """Queues lines, writes them as flood control allows, and settles their futures."""

    def __init__(self, name: str, flood: FloodConfig) -> None:
        self.name = name
        self._flood = flood
        self.window = AckWindow(flood.max_unacked_lines, flood.max_unacked_bytes)
        self._bucket = self._new_bucket()
        self.reset()

    def reset(self) -> None:
        """Nothing queued or in flight: a fresh run (`start` after `aclose`)."""
        self._queue: deque[OutLine] = deque()
        self._echoes: deque[OutLine] = deque()
        # Without echo-message a written line is only delivered once a PONG to a later
        # PING mark proves the server processed it: a line written into a connection the
        # server is closing is otherwise lost without a trace.
        self._unmarked: list[OutLine] = []
        self._marked: deque[tuple[str, list[OutLine]]] = deque()
        self._wake = asyncio.Event()
        self._window_moved = asyncio.Event()

    def new_connection(self) -> None:
        """A new connection starts with nothing outstanding and full buckets."""
        self.window.reset()
        self._bucket = self._new_bucket()

    def _new_bucket(self) -> tuple[TokenBucket, TokenBucket]:
        flood, now = self._flood, time.monotonic()
        return (
            TokenBucket.full(flood.per_second, flood.burst, now),
            TokenBucket.full(flood.bytes_per_second, flood.burst_bytes, now),
        )

    def _pace(self, size: int) -> float:
        """0 and the tokens taken when a line of `size` bytes may go now, else the wait."""
        lines, octets = self._bucket
        now = time.monotonic()
        wait = lines.take(now)
        if wait > 0:
            return wait
        wait = octets.take(now, min(size, octets.burst))
        if wait > 0:
            lines.tokens += 1  # not sent after all
        return wait

    # --- queueing -------------------------------------------------------------------

    def put(self, line: str) -> None:
        """Queues a command nobody waits on by its future (JOIN)."""
        self._queue.append(OutLine(line))
        self._wake.set()

    async def send(
        self,
        lines: Iterable[str],
        *,
        echo: bool,
        target: str,
        conn: Connection | None,
        timeout: float,
        delivered: Callable[[str], None] | None = None,
    ) -> list[str]:
        """Queues `lines` for channel `target` (folded) and returns, for each, the id the
        server gave it ("" without one) once all are delivered; `delivered` hears of each
        line as it is, in order. Lines not yet written when `timeout` passes without a
        line delivered are withdrawn and RetryableSendError raised: a long message paced
        by flood control takes as long as it takes, a stalled one does not."""
        loop = asyncio.get_running_loop()
        entries = [
            OutLine(line, echo=echo, target=target, future=loop.create_future()) for line in lines
        ]
        idle = not self._queue
        self._queue.extend(entries)
        if idle and conn is not None and conn.connected and self.flush(conn) == 0:
            pass  # all written already
        else:
            self._wake.set()
        ids: list[str] = []
        try:
            async with asyncio.timeout(timeout) as deadline:
                for e in entries:
                    if e.future is None:
                        continue
                    ids.append(await e.future)
                    deadline.reschedule(loop.time() + timeout)
                    if delivered is not None:
                        delivered(ids[-1])
                return ids
        except TimeoutError:
            for e in entries:
                e.cancelled = True
            raise RetryableSendError(f"{self.name}: send timed out") from None
        finally:
            for e in entries:
                if e.future is not None and not e.future.done():
                    e.cancelled = True
                    e.future.cancel()

    # --- writing --------------------------------------------------------------------

    async def run(self, s: ConnectionState) -> None:
        """The writer task of session `s`; a failure ends the connection, not the adapter."""
        try:
            await self._write_lines(s.conn)
        except Exception as exc:  # logged; the connection is replaced
            log.exception("writer_failed", network=self.name)
            s.error = f"writer failed: {exc!r}"
            s.conn.disconnect()

    async def _write_lines(self, conn: Connection) -> None:
        """The only sender after registration: window, then buckets, then the socket."""
        while conn.connected:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self.flush(conn)
            if wait == _WINDOW_FULL:
                self._window_moved.clear()
                await self._window_moved.wait()
            elif wait > 0:
                await asyncio.sleep(wait)

    def flush(self, conn: Connection) -> float:
        """Writes queued lines while window and buckets allow; returns 0 when the queue is
        empty, else how long to wait (`_WINDOW_FULL`: until a PONG moves the window).
        Also called by `send` itself, so a line sent on an idle connection goes out at
        once, without a task switch to the writer."""
        while self._queue and conn.connected:
            entry = self._queue[0]
            if entry.cancelled:
                self._queue.popleft()
                continue
            size = len(entry.line.encode("utf-8")) + 2
            if not self.window.has_room(size):
                if not self.window.marks:
                    self.mark(conn)
                return _WINDOW_FULL
            delay = self._pace(size)
            if delay > 0:
                return delay
            self._queue.popleft()
            conn.send_raw(entry.line)
            self.window.sent(size)
            if entry.echo:
                self._echoes.append(entry)
            elif entry.future is not None:
                self._unmarked.append(entry)
            if self.window.wants_mark():  # after the line is counted: the mark covers it
                self.mark(conn)
        if self._unmarked and conn.connected:
            self.mark(conn)  # ask the server to confirm what was just written
        return 0.0

    def mark(self, conn: Connection) -> None:
        """Writes a PING mark; its PONG confirms every line written before it."""
        token = self.window.mark()
        if self._unmarked:
            self._marked.append((token, self._unmarked))
            self._unmarked = []
        line = wire.build("PING", trailing=token)
        conn.send_raw(line)
        self._bucket[1].tokens -= len(line) + 2  # the server counts its bytes too

    # --- confirmations, from incoming lines -----------------------------------------

    def ponged(self, token: str) -> None:
        """A PONG: if it answers one of our marks, the window moves and what was written
        before it is delivered."""
        if self.window.acked(token):
            self._window_moved.set()
            self._confirm_through(token)

    def _confirm_through(self, token: str) -> None:
        """The server answered the PING `token`: every line written before it (and
        before earlier marks) was processed, so those sends are delivered."""
        if not any(t == token for t, _ in self._marked):
            return
        while self._marked:
            t, entries = self._marked.popleft()
            for entry in entries:
                if entry.future is not None and not entry.future.done():
                    entry.future.set_result("")
            if t == token:
                return

    def echoed(self, line: wire.Line) -> None:
        """echo-message: the server relayed our line; it counts as delivered now."""
        if self._echoes:
            entry = self._echoes.popleft()
            if entry.future is not None and not entry.future.done():
                entry.future.set_result(line.tags.get("msgid", ""))

    def refused(self, line: wire.Line, joined: Container[str]) -> None:
        """ERR_NOSUCHNICK / ERR_CANNOTSENDTOCHAN for the line awaiting its echo: refused
        for good in a channel the relay is in, else retried once it has rejoined."""
        target = irc_lower(line.param(1))
        head = self._echoes[0] if self._echoes else None
        if head is None or head.target != target:
            log.warning(
                "send_refused", network=self.name, target=line.param(1), reason=line.params[-1]
            )
            return
        self._echoes.popleft()
        error: AdapterError
        if target in joined or not target.startswith(CHANNEL_PREFIXES):
            # In a channel the relay is in, or to a nick (no such nick: gone), retrying
            # will not help.
            error = PermanentSendError(f"{self.name}: {line.command} {line.params[-1]}")
        else:
            error = RetryableSendError(f"{self.name}: not in {line.param(1)}")
        if head.future is not None and not head.future.done():
            head.future.set_exception(error)

    def fail_all(self, error: AdapterError) -> None:
        """Every line queued, awaiting its echo or unconfirmed fails with `error`."""
        unconfirmed = [e for _, entries in self._marked for e in entries] + self._unmarked
        self._marked.clear()
        self._unmarked = []
        for entry in (*self._queue, *self._echoes, *unconfirmed):
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(error)
                entry.future.exception()
        self._queue.clear()
        self._echoes.clear()


@dataclass(slots=True)
class Progress:
    """How far a long item got before its send was cut (timeout, lost connection): its
    retry goes on from the first line not delivered instead of repeating the others."""

    lines: tuple[str, ...]
    done: int = 0
    first_id: str = ""

    def delivered(self, remote_id: str) -> None:
        self.done += 1
        self.first_id = self.first_id or remote_id


PROGRESS_KEPT = 64
"""Items cut mid-way whose progress is remembered; the oldest is forgotten (and then
sent again whole) past it, so a network that refuses everything costs no memory."""


class Transmitter:
    """`send` of the adapter contract: where the item may go, the lines that say it, and
    the id the server gave the first of them."""

    def __init__(
        self,
        name: str,
        config: IrcConfig,
        *,
        link: Link,
        rooms: Rooms,
        writer: Writer,
        roster: Roster | None = None,
    ) -> None:
        self.name = name
        self._roster = (
            roster if roster is not None else Roster()
        )  # who is in each channel: the nicks to ping
        self.config = config
        self._link = link
        self._rooms = rooms
        self._writer = writer
        self._progress: OrderedDict[str, Progress] = OrderedDict()

    async def send(self, item: Outgoing) -> RemoteId:
        if not self._link.connected:
            raise RetryableSendError(f"{self.name}: not connected")
        folded = irc_lower(item.room)
        # An answer to a private message goes to a nick, which needs no join.
        if folded not in self._rooms.joined and not item.event.origin.direct:
            raise RetryableSendError(f"{self.name}: not in {item.room}")
        tags = {RELAY_TAG: ""} if self._link.enabled("message-tags") else None
        event = item.event
        if isinstance(event, Message | Edit) and event.mentions:
            event = with_nicks(event, self._roster.members.get(folded, set()))
        try:
            out = to_wire(
                event,
                item.room,
                mask=self._link.mask,
                tags=tags,
            )
        except (NotSendable, wire.UnsafeLine) as exc:
            raise PermanentSendError(f"{self.name}: {exc}") from None
        progress = self._progress.pop(item.txn_id, None) or Progress(out.lines)
        s = self._link.current
        try:
            await self._writer.send(
                progress.lines[progress.done :],
                echo=self._link.enabled("echo-message") and out.is_message,
                target=folded,
                conn=s.conn if s is not None else None,
                timeout=self.config.send_timeout,
                delivered=progress.delivered,
            )
        except BaseException:
            if 0 < progress.done < len(progress.lines):
                self._progress[item.txn_id] = progress
                while len(self._progress) > PROGRESS_KEPT:
                    self._progress.popitem(last=False)
            raise
        return RemoteId(progress.first_id or item.txn_id)
