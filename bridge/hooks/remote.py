"""HTTP policy hooks: one JSON POST per event to a DLP service, all destinations at once.

Each hook keeps one aiohttp session (a pool of kept-alive connections) and a semaphore of
`max_concurrency` requests: a slow service makes the events that wait on it wait, never
the event loop, and it is never sent more than its cap at once. Every call sits under
the hook's `timeout_ms`, the wait for a turn included.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from imbridge.config.schema import PolicyHook
from imbridge.errors import ConfigError, ConfigIssue
from imbridge.hooks.verdict import HookRequest, Verdict
from imbridge.hooks.wire import HookAnswerError, parse_answer, request_body
from imbridge.policy import Destination

USER_AGENT = "imbridge-policy-hook/1"
MAX_ANSWER_BYTES = 1 << 20


def read_headers(path: Path, where: str) -> dict[str, str]:
    """`Name: value` lines; blank lines and `#` comments skipped. Read once, at load."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([ConfigIssue(where, None, f"cannot read {path}: {reason}")]) from None
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or any(c in line for c in "\r\0"):
            raise ConfigError(
                [ConfigIssue(where, None, f"{path} line {number}: expected `Name: value`")]
            )
        headers[name.strip()] = value.strip()
    return headers


class HttpHook:
    def __init__(self, config: PolicyHook, headers: Mapping[str, str] | None = None) -> None:
        if config.url is None:
            raise ValueError("an HTTP hook needs a url")
        self.name = config.name
        self.config = config
        self.url = config.url
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._session: aiohttp.ClientSession | None = None
        self._turns: asyncio.Semaphore | None = None

    def _client(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """Made on first use, inside the running loop that will use it."""
        if self._session is None or self._turns is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_concurrency,
                ssl=ssl.create_default_context(),
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, raise_for_status=False
            )
            self._turns = asyncio.Semaphore(self.config.max_concurrency)
        return self._session, self._turns

    async def ask(self, request: HookRequest) -> dict[Destination, Verdict]:
        session, turns = self._client()
        async with asyncio.timeout(self.config.timeout_ms / 1000), turns:
            async with session.post(self.url, json=request_body(request)) as resp:
                if resp.status != 200:
                    raise HookAnswerError(f"HTTP {resp.status}")
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                if len(raw) > MAX_ANSWER_BYTES:
                    raise HookAnswerError("answer larger than 1 MiB")
        try:
            import json  # noqa: PLC0415 - stdlib, cheap

            body = json.loads(raw)
        except ValueError:
            raise HookAnswerError("the answer is not JSON") from None
        return parse_answer(body, request.destinations)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
