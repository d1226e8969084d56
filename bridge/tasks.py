"""Task ownership: every background task the daemon and its parts start lives in a
`TaskTree`, an `asyncio.TaskGroup` whose children cannot fail silently.

Why not a bare TaskGroup: one failing child cancels the whole group and the task that
entered it, which for a daemon means one network's bug stops every network. Here a child
that raises is logged with its name and context (`network=...`) and handed to the owner's
`on_failure`, which decides: restart it (the daemon's supervisor does so for a network)
or stop with a clear error. Closing cancels every child and awaits it, so nothing the
tree started outlives it, and logs what any of them raised on the way out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("imbridge.tasks")

OnFailure = Callable[[str, BaseException], None]
"""Told (task name, error) once a child has failed; runs in the event loop, must not block."""


class TaskTree:
    """An async context manager owning named tasks; see the module docstring."""

    def __init__(self, owner: str, *, on_failure: OnFailure | None = None) -> None:
        self.owner = owner
        self.on_failure = on_failure
        self._group: asyncio.TaskGroup | None = None
        self._children: set[asyncio.Task[None]] = set()
        self._closed = False

    async def __aenter__(self) -> TaskTree:
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(
        self, coro: Coroutine[Any, Any, None], *, name: str, **context: str
    ) -> asyncio.Task[None]:
        """Starts `coro` as a child; `context` goes on the line logged if it fails."""
        if self._group is None or self._closed:
            coro.close()
            raise RuntimeError(f"{self.owner}: no task can start once closed ({name})")
        task = self._group.create_task(self._guard(coro, name, context), name=name)
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        # A child cancelled before its first step never ran `coro`: closing it then
        # keeps Python from warning that it was never awaited (no-op once it ran).
        task.add_done_callback(lambda _: coro.close())
        return task

    async def _guard(
        self, coro: Coroutine[Any, Any, None], name: str, context: dict[str, str]
    ) -> None:
        try:
            await coro
        except Exception as exc:
            log.error(
                "task_failed",
                owner=self.owner,
                task=name,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
                **context,
            )
            if self.on_failure is not None:
                self.on_failure(name, exc)

    async def cancel(self, task: asyncio.Task[None]) -> None:
        """Cancels one child and waits until it has finished."""
        task.cancel()
        await asyncio.wait([task])

    async def aclose(self) -> None:
        """Cancels every child and awaits them all; safe twice."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._children):
            task.cancel()
        if self._group is not None:
            await self._group.__aexit__(None, None, None)
