"""How an adapter hands incoming events to the core without waiting for each commit.

An adapter that awaited every sink call would let one event through per commit; a busy
room would then be limited by the commit latency, not by the disk. `Intake` keeps up to
`window` sink calls in flight, so consecutive events share a group commit. Tasks start in
the order they were created, and the relay takes each event's place in the commit order
as soon as its call starts (see `Database.reserve`), so events still commit in the order
they arrived; a lookup the adapter makes afterwards (an edit's target) sees every event
handed over before it, because `Database.read` first lets started tasks take their
places.

`then` callbacks (advance a cursor, acknowledge the server, count) run in arrival order,
each once its own event is on disk: a cursor never moves past an event still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

from imbridge.adapter import EventSink
from imbridge.events import Event

log = structlog.get_logger("imbridge.intake")

Then = Callable[[], Awaitable[object] | object]

DEFAULT_WINDOW = 256


class Intake:
    def __init__(self, sink: EventSink, *, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._sink = sink
        self._window = window
        self._inflight: deque[asyncio.Task[None]] = deque()

    def __len__(self) -> int:
        return len(self._inflight)

    async def put(self, event: Event | None, then: Then | None = None) -> None:
        """Starts handing `event` over (None: only run `then`, in order); waits only while
        `window` calls are already in flight."""
        while len(self._inflight) >= self._window:
            await asyncio.wait([self._inflight[0]])
            self._prune()
        prev = self._inflight[-1] if self._inflight else None
        task = asyncio.get_running_loop().create_task(self._handle(event, prev, then))
        self._inflight.append(task)
        self._prune()

    async def drain(self) -> None:
        """Waits until every event handed over is on disk and its `then` has run."""
        while self._inflight:
            await asyncio.wait([self._inflight[-1]])
            self._prune()

    async def aclose(self, grace: float = 2.0) -> None:
        """Lets what is in flight reach the disk for up to `grace` seconds (events from a
        protocol without replay would otherwise be lost), then abandons the rest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.drain()
        tasks = list(self._inflight)
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _prune(self) -> None:
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()

    async def _handle(
        self, event: Event | None, prev: asyncio.Task[None] | None, then: Then | None
    ) -> None:
        try:
            if event is not None:
                await self._sink(event)
            if prev is not None and not prev.done():
                await asyncio.wait([prev])
            if then is not None:
                result = then()
                if inspect.isawaitable(result):
                    await result
        except asyncio.CancelledError:
            raise
        except Exception:  # the sink logs its own failures; a `then` must not stop intake
            log.exception("intake_failed")


__all__ = ["DEFAULT_WINDOW", "Intake"]
