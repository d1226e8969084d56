"""Asks every configured hook about an event, concurrently, once.

The answers are cached per event (by its network and remote id when it has one, else its
id), so an event handed over again never asks twice; the relay also skips hooks for an
event its id map already holds (a replay after a restart). A hook that times out or
fails yields an `Answer` without verdicts: `combine` applies its `on_error`, and the
failure is counted here for /metrics and logged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from imbridge.config.schema import PolicyHook
from imbridge.events import Event
from imbridge.hooks import plugins
from imbridge.hooks.combine import Answer
from imbridge.hooks.verdict import HookRequest, Verdict
from imbridge.policy import Destination

log = structlog.get_logger("imbridge.hooks")

CACHE_EVENTS = 4096


class Hook(Protocol):
    name: str
    config: PolicyHook

    async def ask(self, request: HookRequest) -> dict[Destination, Verdict]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class HookStats:
    requests: int = 0
    cached: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    """Failures by the `on_error` that applied: `deny` or `allow`."""
    decisions: Counter[str] = field(default_factory=Counter)
    """Per destination, by action."""


def build(configs: Sequence[PolicyHook], base: Path | None = None) -> list[Hook]:
    """The hooks of `policy.hooks`: entry points loaded and header files read now, at
    load, so a missing plugin or file is a config error and not a failure per event."""
    hooks: list[Hook] = []
    for i, config in enumerate(configs):
        where = f"policy.hooks[{i}]"
        if config.url is not None:
            # Only a daemon with an HTTP hook loads its client (about 0.5 MiB resident).
            from imbridge.hooks.remote import HttpHook, read_headers  # noqa: PLC0415

            headers = None
            if config.headers_file is not None:
                path = config.headers_file
                if not path.is_absolute() and base is not None:
                    path = base / path
                headers = read_headers(path, f"{where}.headers_file")
            hooks.append(HttpHook(config, headers))
        else:
            hooks.append(plugins.PythonHook(config, plugins.load(config, f"{where}.entry_point")))
    return hooks


def cache_key(event: Event) -> str:
    o = event.origin
    return f"{o.network}\0{o.remote_id}" if o.remote_id is not None else f"\0{event.id}"


class Hooks:
    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = tuple(hooks)
        self.stats = {h.name: HookStats() for h in self.hooks}
        self._cache: OrderedDict[str, list[Answer]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.hooks)

    async def ask(self, key: str, request: HookRequest) -> list[Answer]:
        cached = self._cache.get(key)
        if cached is not None and all(
            a.verdicts is None or all(d in a.verdicts for d in request.destinations) for a in cached
        ):
            for a in cached:
                self.stats[a.hook].cached += 1
            return cached
        if len(self.hooks) == 1:  # no task to gather one answer: one less per event
            answers = [await self._one(self.hooks[0], request)]
        else:
            answers = list(await asyncio.gather(*(self._one(h, request) for h in self.hooks)))
        self._cache[key] = answers
        while len(self._cache) > CACHE_EVENTS:
            self._cache.popitem(last=False)
        return answers

    async def _one(self, hook: Hook, request: HookRequest) -> Answer:
        stats = self.stats[hook.name]
        stats.requests += 1
        started = time.monotonic()
        config = hook.config
        try:
            verdicts = await hook.ask(request)
        except Exception as exc:  # noqa: BLE001 - any failure is the hook's on_error
            error = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            stats.errors[config.on_error] += 1
            origin = request.origin
            log.warning(
                "policy_hook_failed",
                hook=hook.name,
                error=error,
                on_error=config.on_error,
                network=origin.network,
                room=origin.room,
                event_id=request.event.id,
            )
            return Answer(
                hook.name,
                None,
                error=error[:300],
                on_error=config.on_error,
                notify_sender=config.notify_sender,
            )
        finally:
            stats.seconds += time.monotonic() - started
        for v in verdicts.values():
            stats.decisions[v.action.value] += 1
        return Answer(
            hook.name, verdicts, on_error=config.on_error, notify_sender=config.notify_sender
        )

    async def aclose(self) -> None:
        for hook in self.hooks:
            try:
                await hook.aclose()
            except Exception as exc:  # noqa: BLE001 - closing the others matters more
                log.warning("policy_hook_close_failed", hook=hook.name, error=str(exc))
