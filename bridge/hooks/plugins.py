"""Python policy hooks, found through the `imbridge.policy_hooks` entry-point group.

An entry point names a factory (a class or a function) called once with the hook's
`options` as keyword arguments; what it returns has a `decide(request, destination)`
method answering a `Verdict`, plain or `async`. A plain one runs in this hook's own
threads, so a hook that computes for a while never blocks the event loop; either kind runs
under `timeout_ms` per event (all destinations together). A plain hook that overruns
cannot be interrupted (Python cannot stop a thread): its answer is ignored, `on_error`
applies, and the thread finishes in the background, so keep such hooks fast.
"""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

from imbridge.config.schema import PolicyHook
from imbridge.errors import ConfigError, ConfigIssue
from imbridge.hooks.verdict import HookRequest, Verdict
from imbridge.policy import Destination

GROUP = "imbridge.policy_hooks"


class Decider(Protocol):
    """What a Python hook's factory returns."""

    def decide(self, request: HookRequest, destination: Destination) -> Any: ...


def load(config: PolicyHook, where: str) -> Decider:
    found = entry_points(group=GROUP, name=config.entry_point or "")
    if not found:
        known = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP))) or "none"
        raise ConfigError(
            [
                ConfigIssue(
                    where,
                    None,
                    f"no installed policy hook {config.entry_point!r} "
                    f"(entry-point group {GROUP}; installed: {known})",
                )
            ]
        )
    (ep,) = tuple(found)[:1]
    try:
        factory = ep.load()
        decider = factory(**config.options)
    except Exception as exc:  # noqa: BLE001 - a broken plugin is a config problem, said once
        raise ConfigError(
            [ConfigIssue(where, None, f"policy hook {ep.value} failed to load: {exc!r}")]
        ) from None
    if not callable(getattr(decider, "decide", None)):
        raise ConfigError(
            [ConfigIssue(where, None, f"policy hook {ep.value} has no decide() method")]
        )
    return cast(Decider, decider)  # checked just above


class PythonHook:
    def __init__(self, config: PolicyHook, decider: Decider) -> None:
        self.name = config.name
        self.config = config
        self._decider = decider
        self._async = inspect.iscoroutinefunction(decider.decide)
        self._threads: ThreadPoolExecutor | None = None

    def _decide_all(self, request: HookRequest) -> dict[Destination, Verdict]:
        return {d: _checked(self._decider.decide(request, d)) for d in request.destinations}

    async def ask(self, request: HookRequest) -> dict[Destination, Verdict]:
        async with asyncio.timeout(self.config.timeout_ms / 1000):
            if self._async:
                return {
                    d: _checked(await self._decider.decide(request, d))
                    for d in request.destinations
                }
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    max_workers=min(4, self.config.max_concurrency),
                    thread_name_prefix=f"hook-{self.name}",
                )
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._decide_all, request)

    async def aclose(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None


def _checked(value: object) -> Verdict:
    if not isinstance(value, Verdict):
        raise TypeError(f"decide() returned {type(value).__name__}, not a Verdict")
    return value
