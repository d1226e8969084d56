"""The durable outbox: every (event, destination) waits here until its network took it.

Invariants:
* a row is written (in the relay transaction) before the first send attempt, and removed
  only in the same transaction that records the remote id, so a crash at any point either
  resends the item (with the same `txn_id`, which idempotent protocols deduplicate) or
  finds it done;
* one worker per destination room sends strictly in order; a retryable failure holds the
  queue (backing off with jitter), a permanent one is recorded and skipped;
* sends wait while their adapter is disconnected, without counting attempts, and obey a
  token bucket per destination.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from imbridge import codec
from imbridge.adapter import Adapter, Outgoing, RateLimit
from imbridge.archive import Recorder
from imbridge.db import Database
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import Delete, Edit, Event, Message, RemoteId
from imbridge.idmap import IdMap, record_sync
from imbridge.policy import Destination
from imbridge.ratelimit import TokenBucket
from imbridge.render import as_correction

log = structlog.get_logger("imbridge.outbox")

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_UNEXPECTED = 8  # an adapter bug raising something odd is retried this often, then dropped
SEND_TIMEOUT = 60.0
OFFLINE_POLL = 0.1


def txn_id_for(event_id: str, network: str, room: str, purpose: str = "relay") -> str:
    """Stable per (event, destination): a retry, even after a restart, reuses it."""
    digest = hashlib.blake2b(
        f"{purpose}\0{event_id}\0{network}\0{room}".encode(), digest_size=12
    ).hexdigest()
    return f"imb{digest}"


@dataclass(slots=True)
class Item:
    network: str
    room: str
    event: Event
    txn_id: str
    seq: int = 0
    attempts: int = 0
    created: float = field(default_factory=time.time)

    @property
    def dest(self) -> Destination:
        return Destination(self.network, self.room)


@dataclass(slots=True)
class OutboxStats:
    """Counters the metrics observer reads; plain numbers, no prometheus here."""

    sent: int = 0
    failed: int = 0
    retries: int = 0


def backoff(
    attempts: int, rng: Callable[[], float] = random.random, *, base: float = BACKOFF_BASE
) -> float:
    """Exponential with jitter in [0.5, 1.5) of the step, capped."""
    step = min(BACKOFF_CAP, base * (2 ** max(0, attempts - 1)))
    return float(step * (0.5 + rng()))


def enqueue_sync(conn: sqlite3.Connection, items: list[Item]) -> None:
    """Persists items inside the caller's transaction, assigning their sequence numbers."""
    now = time.time()
    for item in items:
        cur = conn.execute(
            "INSERT OR IGNORE INTO outbox (network, room, event_id, txn_id, payload, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (item.network, item.room, item.event.id, item.txn_id, codec.dumps(item.event), now),
        )
        item.seq = cur.lastrowid or 0
        item.created = now


class Outbox:
    def __init__(
        self,
        db: Database,
        adapters: Mapping[str, Adapter],
        rate_limits: Mapping[str, RateLimit],
        recorder: Recorder,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ids = IdMap(db)
        self.adapters = adapters
        self.rate_limits = rate_limits
        self.recorder = recorder
        self.clock = clock
        self.stats: dict[str, OutboxStats] = {name: OutboxStats() for name in adapters}
        self._queues: dict[tuple[str, str], deque[Item]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.backoff_base = BACKOFF_BASE
        self.observe_send: Callable[[str, float], None] | None = None

    async def load(self) -> int:
        """Queues what a previous run left pending; returns how many items."""

        def q(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT seq, network, room, txn_id, payload, attempts, created FROM outbox"
                " WHERE state = 'pending' ORDER BY seq"
            ).fetchall()

        rows = await self.db.read(q)
        items = [
            Item(network=n, room=r, event=codec.loads(p), txn_id=t, seq=s, attempts=a, created=c)
            for s, n, r, t, p, a, c in rows
        ]
        self.wake(items)
        return len(items)

    def depth(self, network: str | None = None) -> int:
        return sum(len(q) for (n, _), q in self._queues.items() if network in (None, n))

    def oldest_age(self, network: str | None = None) -> float:
        heads = [q[0].created for (n, _), q in self._queues.items() if q and network in (None, n)]
        return time.time() - min(heads) if heads else 0.0

    def wake(self, items: list[Item]) -> None:
        """Hands committed items to their destination workers."""
        for item in items:
            key = (item.network, item.room)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
            queue.append(item)
            worker = self._workers.get(key)
            if (worker is None or worker.done()) and not self._closing:
                self._workers[key] = asyncio.get_running_loop().create_task(
                    self._work(key), name=f"outbox:{key[0]}:{key[1]}"
                )
        if items:
            self._idle.clear()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once every queue is empty (used by drain and tests)."""
        try:
            async with asyncio.timeout(timeout):
                while self.depth():
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _work(self, key: tuple[str, str]) -> None:
        network, room = key
        queue = self._queues[key]
        bound = log.bind(dest_network=network, dest_room=room)
        while queue and not self._closing:
            # Looked up each time: a reload may replace the network's adapter. A network
            # that is not (or no longer) configured keeps its items until it is again.
            adapter = self.adapters.get(network)
            if adapter is None or not adapter.connected:
                # The contract has no "reconnected" callback; a short poll keeps it small.
                await asyncio.sleep(OFFLINE_POLL)
                continue
            batch = _batch(queue, adapter.capabilities.send_window)
            delays = await self._send_batch(key, adapter, batch, bound)
            finished = {
                id(item) for item, delay in zip(batch, delays, strict=True) if delay is None
            }
            if len(finished) == len(batch):
                for _ in batch:
                    queue.popleft()
            else:
                kept = [item for item in queue if id(item) not in finished]
                queue.clear()
                queue.extend(kept)
                await asyncio.sleep(max(d for d in delays if d is not None))
        if not self.depth():
            self._idle.set()

    async def _send_batch(
        self, key: tuple[str, str], adapter: Adapter, batch: list[Item], bound: Any
    ) -> list[float | None]:
        """Sends `batch` with up to `send_window` sends in flight, started in queue order
        (an adapter that declares a window keeps wire order for concurrent sends); each
        result is None when the item is finished, or the delay before retrying it."""
        if len(batch) == 1:
            await self._pace(key)
            return [await self._attempt(adapter, batch[0], bound)]
        tasks = []
        for item in batch:
            await self._pace(key)
            tasks.append(asyncio.ensure_future(self._attempt(adapter, item, bound)))
            await asyncio.sleep(0)  # let it write before the next one starts
        return list(await asyncio.gather(*tasks))

    async def _pace(self, key: tuple[str, str]) -> None:
        limit = self.rate_limits.get(key[0])
        if limit is None:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(
                limit.per_second, limit.burst, self.clock()
            )
        while True:  # the bucket computes the exact wait; there is nothing to wait on
            wait = bucket.take(self.clock())
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _attempt(self, adapter: Adapter, item: Item, bound: Any) -> float | None:
        """One send: None when the item is finished (delivered or failed for good), else
        how long to wait before retrying it."""
        stats = self.stats.setdefault(item.network, OutboxStats())
        try:
            outgoing = await self._outgoing(item)
            if outgoing is None:
                await self.db.transact(lambda c: _delete(c, item))
                return None
            began = time.perf_counter()
            async with asyncio.timeout(SEND_TIMEOUT):
                remote_id = await adapter.send(outgoing)
            if self.observe_send is not None:
                self.observe_send(item.network, time.perf_counter() - began)
        except RetryableSendError as exc:
            item.attempts += 1
            stats.retries += 1
            delay = (
                exc.retry_after
                if exc.retry_after is not None
                else backoff(item.attempts, base=self.backoff_base)
            )
            bound.warning(
                "send_retry",
                event_id=item.event.id,
                attempts=item.attempts,
                delay=round(delay, 3),
                error=str(exc),
            )
            return delay
        except PermanentSendError as exc:
            await self._fail(item, str(exc), bound)
            return None
        except Exception as exc:  # noqa: BLE001 - one bad send must not stop the queue
            item.attempts += 1
            if item.attempts >= MAX_UNEXPECTED:
                await self._fail(item, f"{type(exc).__name__}: {exc}", bound)
                return None
            stats.retries += 1
            delay = backoff(item.attempts, base=self.backoff_base)
            bound.warning(
                "send_retry",
                event_id=item.event.id,
                attempts=item.attempts,
                delay=round(delay, 3),
                error=f"{type(exc).__name__}: {exc}",
            )
            return delay
        await self.db.transact(lambda c: self._delivered_sync(c, item, remote_id))
        stats.sent += 1
        bound.debug("relayed", event_id=item.event.id, remote_id=remote_id)
        return None

    async def _outgoing(self, item: Item) -> Outgoing | None:
        event = item.event
        target: RemoteId | None = None
        reply_to: RemoteId | None = None
        if isinstance(event, Edit | Delete):
            target = await self.ids.remote_for(event.target, item.network, item.room)
            if target is None:
                if isinstance(event, Delete):
                    return None  # its message never reached this room: nothing to delete
                adapter = self.adapters[item.network]
                event = as_correction(event, "", adapter.capabilities)
        elif isinstance(event, Message) and event.reply_to is not None:
            reply_to = await self.ids.remote_for(event.reply_to, item.network, item.room)
        return Outgoing(
            room=item.room, event=event, target=target, reply_to=reply_to, txn_id=item.txn_id
        )

    def _delivered_sync(self, conn: sqlite3.Connection, item: Item, remote_id: str) -> None:
        _delete(conn, item)
        if remote_id:
            record_sync(
                conn,
                network=item.network,
                room=item.room,
                remote_id=remote_id,
                event_id=item.event.id,
                inbound=False,
            )
        self.recorder.record_delivery(
            conn,
            item.event.id,
            item.dest,
            remote_id=RemoteId(remote_id) if remote_id else None,
            error=None,
        )

    async def _fail(self, item: Item, reason: str, bound: Any) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox SET state = 'failed', attempts = ?, last_error = ? WHERE seq = ?",
                (item.attempts, reason, item.seq),
            )
            self.recorder.record_delivery(
                conn, item.event.id, item.dest, remote_id=None, error=reason
            )

        await self.db.transact(w)
        self.stats.setdefault(item.network, OutboxStats()).failed += 1
        bound.error("send_failed", event_id=item.event.id, error=reason)

    async def aclose(self) -> None:
        """Stops the workers; what was not delivered stays in the database."""
        self._closing = True
        workers = [w for w in self._workers.values() if not w.done()]
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _batch(queue: deque[Item], window: int) -> list[Item]:
    """The head of the queue, and while the window allows, the plain messages after it:
    an item whose send first looks up an id (edit, delete, reply) goes alone, so no
    lookup can let a later send overtake it on the wire."""
    batch = [queue[0]]
    for item in itertools.islice(queue, 1, max(1, window)):
        event = item.event
        if not isinstance(event, Message) or event.reply_to is not None:
            break
        batch.append(item)
    return batch


def _delete(conn: sqlite3.Connection, item: Item) -> None:
    conn.execute("DELETE FROM outbox WHERE txn_id = ?", (item.txn_id,))
