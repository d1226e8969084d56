"""HTTP policy hooks: a JSON POST to a DLP service, all of an event's destinations at once.

Each hook keeps one aiohttp session (a pool of kept-alive connections) and never has more
than `max_concurrency` requests in flight: a slow service makes the events that wait on
it wait, never the event loop. Batched (the default), the events that arrive while the
requests are in flight queue, and the next request carries up to `max_batch` of them:
the HTTP exchange, which costs the relay's event loop more CPU than anything else it does
for an event, is paid once per batch. Every event keeps its own `timeout_ms` budget, its
wait in the queue included; a batch request lasts until the latest of its events' budgets.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from imbridge.config.schema import PolicyHook
from imbridge.errors import ConfigError, ConfigIssue
from imbridge.hooks.verdict import HookRequest, Verdict
from imbridge.hooks.wire import (
    HookAnswerError,
    batch_body,
    parse_answer,
    parse_batch_answer,
    request_body,
)
from imbridge.policy import Destination

USER_AGENT = "imbridge-policy-hook/1"
MAX_ANSWER_BYTES = 1 << 20
NO_CLIENT_TIMEOUT = aiohttp.ClientTimeout()


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


Verdicts = dict[Destination, Verdict]


def encode(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class _Waiting:
    """An event queued for the next batch; its caller awaits `answer` until `deadline`."""

    request: HookRequest
    deadline: float
    answer: asyncio.Future[Verdicts]


class HttpHook:
    def __init__(self, config: PolicyHook, headers: Mapping[str, str] | None = None) -> None:
        if config.url is None:
            raise ValueError("an HTTP hook needs a url")
        self.name = config.name
        self.config = config
        self.url = URL(config.url)
        """Parsed once: aiohttp takes a `URL` as it is."""
        self._headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
            **(headers or {}),
        }
        self._budget = config.timeout_ms / 1000
        self._session: aiohttp.ClientSession | None = None
        self._turns: asyncio.Semaphore | None = None
        self._queue: deque[_Waiting] = deque()
        self._pending: deque[_Waiting] = deque()
        """Every event still waited for, queued or in a request, in arrival order: with
        one `timeout_ms` for all, also in deadline order (see `_expire`)."""
        self._expiry: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._flush_due = False
        self._linger: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0
        """HTTP requests sent (batched: fewer than the events asked)."""

    def _client(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """Made on first use, inside the running loop that will use it."""
        if self._session is None or self._turns is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_concurrency,
                # aiohttp's verifying context, made once at its import: a context of
                # our own would read the system's CA files here, on the loop (~20 ms),
                # at the first request after each start or reload.
                ssl=True,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                raise_for_status=False,
                # Per request, aiohttp would otherwise match cookies, arm a timer for its
                # own total timeout (each event's budget bounds the request already) and
                # set up a decompressor (the service is asked to answer uncompressed).
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=NO_CLIENT_TIMEOUT,
                auto_decompress=False,
            )
            self._turns = asyncio.Semaphore(self.config.max_concurrency)
        return self._session, self._turns

    @property
    def queued(self) -> int:
        """Events waiting for a request to carry them (batched hooks only)."""
        return sum(not w.answer.done() for w in self._queue)

    async def ask(self, request: HookRequest) -> Verdicts:
        if not self.config.batch:
            return await self._ask_one(request)
        if self._closed:
            raise HookAnswerError("the hook was closed (reload or stop)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget
        answer: asyncio.Future[Verdicts] = loop.create_future()
        waiting = _Waiting(request, deadline, answer)
        self._queue.append(waiting)
        pending = self._pending
        while pending and pending[0].answer.done():
            pending.popleft()
        pending.append(waiting)
        if self._expiry is None:
            self._expiry = loop.call_at(deadline, self._expire)
        if not self._flush_due:
            # Not at once: the events handed over in this turn of the loop join it.
            self._flush_due = True
            loop.call_soon(self._flush)
        return await answer

    def _expire(self) -> None:
        """Fails the events past their budget. One timer for them all, at the earliest
        deadline, rather than one per event: this is on the relay's loop for every event,
        and deadlines come in arrival order, so the timer only ever looks at the head. An
        answer that is already done (expired) is skipped by its batch."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        while pending:
            head = pending[0]
            if not head.answer.done():
                if head.deadline > now:
                    self._expiry = loop.call_at(head.deadline, self._expire)
                    return
                head.answer.set_exception(TimeoutError())
            pending.popleft()

    async def _ask_one(self, request: HookRequest) -> Verdicts:
        _, turns = self._client()
        async with asyncio.timeout(self._budget), turns:
            self.batches += 1
            raw = await self._exchange(encode(request_body(request)))
        return parse_answer(_json(raw), request.destinations)

    async def _exchange(self, data: bytes) -> bytes:
        """One POST: the answer's body, or `HookAnswerError` for anything but a 200."""
        session, _ = self._client()
        async with session.post(self.url, data=data) as resp:
            if resp.status != 200:
                raise HookAnswerError(f"HTTP {resp.status}")
            length = resp.content_length
            if length is not None:
                if length > MAX_ANSWER_BYTES:
                    raise HookAnswerError("answer larger than 1 MiB")
                # Bounded by its Content-Length: read in one call, the connection
                # back in the pool as it returns.
                return await resp.read()
            chunks: list[bytes] = []
            size = 0
            while chunk := await resp.content.read(MAX_ANSWER_BYTES + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise HookAnswerError("answer larger than 1 MiB")
            return b"".join(chunks)

    def _flush(self) -> None:
        """Starts requests for the queued events: a full batch whenever fewer than
        `max_concurrency` requests are in flight; a partial one only when none is (the
        events arriving meanwhile make the next one fuller), or once its oldest event has
        waited a quarter of its budget (so queueing never eats the time the service
        needs to answer)."""
        self._flush_due = False
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        config = self.config
        linger = config.timeout_ms / 4000
        while self._queue and self._in_flight < config.max_concurrency:
            head = self._queue[0]
            if head.answer.done():
                self._queue.popleft()
                continue
            full = len(self._queue) >= config.max_batch
            overdue = loop.time() >= head.deadline - config.timeout_ms / 1000 + linger
            if not (full or overdue or self._in_flight == 0):
                if self._linger is None:
                    at = head.deadline - config.timeout_ms / 1000 + linger
                    self._linger = loop.call_at(at, self._lingered)
                return
            batch = self._take()
            if not batch:
                return
            self._in_flight += 1
            self.batches += 1
            task = loop.create_task(self._send(batch))
            self._batches.add(task)
            task.add_done_callback(self._sent)

    def _lingered(self) -> None:
        self._linger = None
        self._flush()

    def _take(self) -> list[_Waiting]:
        """Up to `max_batch` events still waited for, each event id once (an answer is
        matched to its event by id)."""
        batch: list[_Waiting] = []
        ids: set[str] = set()
        later: list[_Waiting] = []
        while self._queue and len(batch) < self.config.max_batch:
            waiting = self._queue.popleft()
            if waiting.answer.done():
                continue  # its caller gave up (timed out or cancelled)
            if waiting.request.event.id in ids:
                later.append(waiting)
                continue
            ids.add(waiting.request.event.id)
            batch.append(waiting)
        self._queue.extendleft(reversed(later))
        return batch

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._in_flight -= 1
        if self._queue and not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[_Waiting]) -> None:
        requests = [w.request for w in batch]
        try:
            async with asyncio.timeout_at(max(w.deadline for w in batch)):
                raw = await self._exchange(encode(batch_body(requests)))
            results = parse_batch_answer(_json(raw), requests)
        except asyncio.CancelledError:
            _close(batch)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is each event's on_error
            error = str(exc) or repr(exc)
            for w in batch:
                if not w.answer.done():
                    w.answer.set_exception(
                        TimeoutError() if isinstance(exc, TimeoutError) else HookAnswerError(error)
                    )
            return
        for w, result in zip(batch, results, strict=True):
            if w.answer.done():
                continue
            if isinstance(result, HookAnswerError):
                w.answer.set_exception(result)
            else:
                w.answer.set_result(result)

    async def aclose(self) -> None:
        self._closed = True  # no new batch starts, not even for what the cancels free
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._pending.clear()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        _close(self._queue)
        self._queue.clear()
        tasks = list(self._batches)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _close(waiting: Iterable[_Waiting]) -> None:
    """The hook is closing (a reload or a stop): its events get `on_error` like any
    failure, never a cancellation, which would end the relay's task for the event."""
    for w in waiting:
        if not w.answer.done():
            w.answer.set_exception(HookAnswerError("the hook was closed (reload or stop)"))


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        raise HookAnswerError("the answer is not JSON") from None


__all__ = ["HttpHook", "encode", "read_headers"]
