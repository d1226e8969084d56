"""The durable outbox: every (event, destination) waits here until its network took it.

Invariants:
* a row is written (in the relay transaction) before the first send attempt, and removed
  only in the same transaction that records the remote id, so a crash at any point either
  resends the item (with the same `txn_id`, which idempotent protocols deduplicate) or
  finds it done;
* one worker per destination room sends strictly in order; a retryable failure holds the
  queue (backing off with jitter), a permanent one is recorded and skipped;
* sends wait while their adapter is disconnected, without counting attempts, and obey a
  token bucket per destination;
* at most `MEMORY_QUEUE` items per destination are held in memory; the rest wait only in
  the database and are read back in order as the queue drains, so a network that is down
  for days costs disk, not memory;
* senders take fair turns in each queue (`fairness`), each sender's own items in order,
  and each destination counts what waits per sender (`backlog`) for the relay's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import structlog

from imbridge import codec, editwindow
from imbridge.adapter import Adapter, Outgoing, RateLimit
from imbridge.archive import Recorder
from imbridge.archive.keyuse import require_openable
from imbridge.archive.sealing import Sealer
from imbridge.backlog import Backlog
from imbridge.db import Conn, Database
from imbridge.deliveries import DeliveryRecords
from imbridge.dialect import serialize
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import Delete, Edit, Event, Message, Reaction, RemoteId
from imbridge.fairness import FairOrder, cost_of, source_of
from imbridge.idmap import IdMap
from imbridge.policy import Destination
from imbridge.ratelimit import TokenBucket
from imbridge.render import as_correction

log = structlog.get_logger("imbridge.outbox")

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_UNEXPECTED = 8  # an adapter bug raising something odd is retried this often, then dropped
SEND_TIMEOUT = 60.0
OFFLINE_POLL = 0.1
REACTION_BURST = 64
"""Reactions in a row that may be in flight at once even where messages go one by one:
they do not depend on each other, and an adapter may gather them (IRC's one line)."""
MEMORY_QUEUE = 512
"""Items per destination held in memory (about 0.7 KiB each); the rest wait on disk."""


def txn_id_for(event_id: str, network: str, room: str, purpose: str = "relay") -> str:
    """Stable per (event, destination): a retry, even after a restart, reuses it. It
    starts with the event id's time part, so the outbox's index on it grows at its end."""
    digest = hashlib.blake2b(
        f"{purpose}\0{event_id}\0{network}\0{room}".encode(), digest_size=12
    ).hexdigest()
    return f"imb{event_id[:12]}{digest}"


@dataclass(slots=True)
class Item:
    network: str
    room: str
    event: Event
    txn_id: str
    seq: int = 0
    attempts: int = 0
    created: float = field(default_factory=time.time)
    tag: float = 0.0
    """Its place in the destination's fair order (`fairness`)."""
    counted: bool = False
    """Counted in its destination's backlog by this run (see `Outbox.count`)."""
    replaces: list[Any] = field(default_factory=list)
    """Earlier edits of the same message this one stands for (`editwindow`): their rows
    leave the table, recorded as delivered with it, only once it is."""

    @property
    def dest(self) -> Destination:
        return Destination(self.network, self.room)


@dataclass(slots=True)
class OutboxStats:
    """Counters the metrics observer reads; plain numbers, no prometheus here."""

    sent: int = 0
    failed: int = 0
    retries: int = 0
    shed: int = 0
    """Deliveries turned away because the destination's backlog was full."""


def backoff(
    attempts: int, rng: Callable[[], float] = random.random, *, base: float = BACKOFF_BASE
) -> float:
    """Exponential with jitter in [0.5, 1.5) of the step, capped."""
    step = min(BACKOFF_CAP, base * (2 ** max(0, attempts - 1)))
    return float(step * (0.5 + rng()))


def enqueue_sync(conn: Conn, items: list[Item], *, sealer: Sealer) -> None:
    """Persists items inside the caller's transaction, assigning their sequence numbers.
    `sealer` is required so that no caller can queue a payload in clear by forgetting it
    (it passes payloads through when no archive key is set)."""
    now = time.time()
    if items:
        serialize(conn)  # sequence numbers in commit order, across instances
    for item in items:
        payload = sealer.seal(codec.dumps(item.event), table="outbox", key=item.txn_id)
        row = conn.execute(
            "INSERT INTO outbox (network, room, event_id, txn_id, payload, created)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
            (item.network, item.room, item.event.id, item.txn_id, payload, now),
        ).fetchone()
        if row is None:  # already queued under this txn_id: keep its place
            row = conn.execute("SELECT seq FROM outbox WHERE txn_id = ?", (item.txn_id,)).fetchone()
        item.seq = int(row[0]) if row else 0
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
        sealer: Sealer | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer or Sealer()
        """Seals payloads on their way into the table, opens them on the way out."""
        self.ids = IdMap(db)
        self.adapters = adapters
        self.rate_limits = rate_limits
        self.recorder = recorder
        self.clock = clock
        self.stats: dict[str, OutboxStats] = {name: OutboxStats() for name in adapters}
        self._queues: dict[tuple[str, str], deque[Item]] = {}
        self._orders: dict[tuple[str, str], FairOrder] = {}
        self._backlogs: dict[tuple[str, str], Backlog] = {}
        self._earlier: dict[tuple[str, str], int] = {}
        """Highest seq a previous run left per destination: read back, those items are
        counted under their senders; later ones were counted when queued."""
        self._arrivals: dict[tuple[str, str], asyncio.Event] = {}
        """Set when items join a destination's queue: a worker with room in its send
        window starts them at once instead of after the oldest send in flight settles."""
        self._loaded: dict[tuple[str, str], int] = {}
        """Highest seq put in memory per destination: an item read back from the database
        and then woken by its (late) committer is not queued twice."""
        self._spilled: dict[tuple[str, str], tuple[int, int]] = {}
        """Destinations with items waiting only in the database: (how many, highest seq)."""
        self.memory_queue = MEMORY_QUEUE
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._records = DeliveryRecords(db, recorder, self._settled)
        self._closing = False
        self.backoff_base = BACKOFF_BASE
        self.observe_send: Callable[[str, float], None] | None = None
        self.owns: Callable[[str], bool] = lambda network: True
        """Whether this instance sends to `network` (see `imbridge.leases`)."""
        self.shared = False
        """Other instances queue deliveries in the same table (PostgreSQL with several
        instances): what this one commits is read back in sequence order like theirs
        (`wake` spills it), and `watch` finds theirs."""
        self._watermark = 0

    async def load(self) -> int:
        """Queues what a previous run left pending; returns how many items. Only their
        destinations and counts are read here: the workers read the items themselves,
        `memory_queue` at a time."""

        # A retired key removed too early: refuse to start rather than stall a queue.
        await self.db.read(lambda c: require_openable(c, self.sealer), background=True)
        return await self._load_pending(None)

    async def adopt(self, network: str) -> int:
        """Queues what waits for `network`, which this instance now sends to (it took
        the network over from another); returns how many items."""
        return await self._load_pending(network)

    async def _load_pending(self, network: str | None) -> int:
        def q(conn: Conn) -> list[tuple[Any, ...]]:
            where = "" if network is None else " AND network = ?"
            return conn.execute(
                "SELECT network, room, count(*), max(seq) FROM outbox"  # noqa: S608 - fixed clauses
                f" WHERE state = 'pending'{where} GROUP BY network, room",
                () if network is None else (network,),
            ).fetchall()

        rows = [r for r in await self.db.read(q, background=True) if self.owns(r[0])]
        for net, room, count, top in rows:
            key = (net, room)
            if key in self._queues and int(top) <= self._loaded.get(key, 0):
                continue
            self._queues.setdefault(key, deque())
            self.backlog(net, room).earlier += int(count)
            self._earlier[key] = int(top)
            self._spill(key, int(count), int(top))
        return sum(int(count) for _, _, count, _ in rows)

    def _spill(self, key: tuple[str, str], count: int, seq: int) -> None:
        n, top = self._spilled.get(key, (0, 0))
        self._spilled[key] = (n + count, max(top, seq))
        arrived = self._arrivals.get(key)
        if arrived is not None:  # a worker holding an edit reads what came after it
            arrived.set()
        self._start(key)
        self._idle.clear()

    def backlog(self, network: str, room: str) -> Backlog:
        """What `network`'s `room` has waiting, by sender: the relay counts what it
        queues there and asks it before queuing more."""
        key = (network, room)
        backlog = self._backlogs.get(key)
        if backlog is None:
            backlog = self._backlogs[key] = Backlog()
        return backlog

    def count(self, item: Item) -> None:
        """Counts a queued item in its destination's backlog, once (the relay counts what
        it queues in its commit, `wake` what others queue)."""
        if not item.counted:
            item.counted = True
            self.backlog(item.network, item.room).add(source_of(item.event), cost_of(item.event))

    def _uncount(self, item: Item) -> None:
        if item.counted:
            item.counted = False
            backlog = self.backlog(item.network, item.room)
            backlog.remove(source_of(item.event), cost_of(item.event))

    def _order(self, key: tuple[str, str]) -> FairOrder:
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = FairOrder()
        return order

    def depth(self, network: str | None = None) -> int:
        held = sum(len(q) for (n, _), q in self._queues.items() if network in (None, n))
        return held + sum(c for (n, _), (c, _) in self._spilled.items() if network in (None, n))

    def oldest_age(self, network: str | None = None) -> float:
        # Fair turns reorder a queue: its oldest item need not be at its head.
        heads = [
            min(item.created for item in q)
            for (n, _), q in self._queues.items()
            if q and network in (None, n)
        ]
        return time.time() - min(heads) if heads else 0.0

    def wake(self, items: list[Item]) -> None:
        """Hands committed items (in commit order) to their destination workers."""
        for item in items:
            key = (item.network, item.room)
            self.count(item)  # once: the relay counts its own; a copy read back is not
            if item.seq and item.seq <= self._loaded.get(key, 0):
                continue  # already read back from the database, or queued before
            if self.shared:
                # Another instance's rows may sit between ours: read back in order.
                self._note(key, item.seq)
                continue
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
            if key in self._spilled or len(queue) >= self.memory_queue:
                self._spill(key, 1, item.seq)
                continue
            self._order(key).place(queue, item)
            if item.seq:
                self._loaded[key] = item.seq
            arrived = self._arrivals.get(key)
            if arrived is not None:
                arrived.set()
            self._start(key)
        if items:
            self._idle.clear()

    def _start(self, key: tuple[str, str]) -> None:
        worker = self._workers.get(key)
        if (worker is None or worker.done()) and not self._closing:
            self._workers[key] = asyncio.get_running_loop().create_task(
                self._work(key), name=f"outbox:{key[0]}:{key[1]}"
            )

    async def _refill(self, key: tuple[str, str], queue: deque[Item]) -> None:
        """Reads the next items of a spilled destination back from the database. Reads
        run after every commit queued before them, so an item committed but not yet woken
        is either read here or woken later with its seq noted in `_spilled`."""
        after = self._loaded.get(key, 0)
        limit = self.memory_queue - len(queue)
        noted = self._spilled.get(key, (0, 0))[1]

        def q(conn: Conn) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT seq, txn_id, payload, attempts, created FROM outbox"
                " WHERE state = 'pending' AND network = ? AND room = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (key[0], key[1], after, limit),
            ).fetchall()

        rows = await self.db.read(q)
        order, backlog = self._order(key), self.backlog(*key)
        earlier = self._earlier.get(key, 0)
        for s, t, p, a, c in rows:
            item = Item(
                network=key[0],
                room=key[1],
                event=codec.loads(self.sealer.open(p, table="outbox", key=t)),
                txn_id=t,
                seq=s,
                attempts=a,
                created=c,
            )
            if s <= earlier:  # a previous run's: now its sender is known
                backlog.adopt(source_of(item.event), cost_of(item.event))
            item.counted = True  # by `adopt`, or when this run queued it
            order.place(queue, item)  # read in commit order, so a restart rebuilds the turns
        loaded = max(after, int(rows[-1][0])) if rows else after
        if len(rows) < limit:
            # Everything pending was read. An item noted before the read and not among
            # the rows is no longer pending (a duplicate of a delivered one); one noted
            # while the read was under way has a higher seq and is read next time.
            loaded = max(loaded, noted)
        self._loaded[key] = loaded
        count, top = self._spilled.pop(key, (0, 0))
        count = max(0, count - len(rows))
        if len(rows) == limit or top > loaded:
            self._spilled[key] = (count, top)  # more wait on disk: read again when drained

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """True once every queue is empty and every delivery is recorded (used by drain
        and tests)."""
        try:
            async with asyncio.timeout(timeout):
                while self.depth() or self._records:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _work(self, key: tuple[str, str]) -> None:
        """Runs one destination's queue; a failure outside a send (the database, a bug)
        is logged with the destination and the queue restarted after a backoff, so one
        bad read never stalls a room until the next message happens to wake it."""
        failures = 0
        while True:
            try:
                await self._drain(key)
            except Exception:
                failures += 1
                delay = backoff(failures, base=self.backoff_base)
                log.exception(
                    "outbox_worker_failed",
                    dest_network=key[0],
                    dest_room=key[1],
                    restart_in=round(delay, 3),
                )
                await asyncio.sleep(delay)
            else:
                return

    async def _drain(self, key: tuple[str, str]) -> None:
        network, room = key
        queue = self._queues[key]
        bound = log.bind(dest_network=network, dest_room=room)
        while (queue or key in self._spilled) and not self._closing:
            if key in self._spilled and len(queue) <= self.memory_queue // 2:
                await self._refill(key, queue)
                if not queue:
                    continue
            # Looked up each time: a reload may replace the network's adapter. A network
            # that is not (or no longer) configured keeps its items until it is again.
            adapter = self.adapters.get(network)
            if adapter is None or not adapter.connected:
                # The contract has no "reconnected" callback; a short poll keeps it small.
                await asyncio.sleep(OFFLINE_POLL)
                continue
            window = adapter.capabilities.send_window
            burst = window == 1 and isinstance(queue[0].event, Reaction)
            if burst:
                window = REACTION_BURST  # over the run of reactions at the head only
            self._order(key).pinned = window  # what may be in flight keeps its place
            if window == 1:
                if await self._gather_edits(key, adapter, queue):
                    continue
                await self._pace(key)
                delay = await self._attempt(adapter, queue[0], bound)
                if delay is None:
                    queue.popleft()
            else:
                delay = await self._slide(key, adapter, queue, window, bound, burst=burst)
            await asyncio.sleep(0)  # a send that never waited must not starve the loop
            if delay is not None:
                await asyncio.sleep(delay)
        if not self.depth() and not self._records:
            self._idle.set()

    async def _gather_edits(
        self, key: tuple[str, str], adapter: Adapter, queue: deque[Item]
    ) -> bool:
        """Merges the head correction into a later edit of the same message, or holds it
        for one (see `editwindow`); True when the queue changed or time passed, so the
        worker looks at its head again."""
        if adapter.capabilities.edits:
            return False
        if editwindow.merge_head(queue):
            return True
        wait = (
            0.0
            if key in self._spilled
            else editwindow.hold(queue, adapter.capabilities, time.time())
        )
        if wait <= 0:
            return False
        arrived = self._arrivals.setdefault(key, asyncio.Event())
        arrived.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await arrived.wait()
        return True

    async def _slide(
        self,
        key: tuple[str, str],
        adapter: Adapter,
        queue: deque[Item],
        window: int,
        bound: Any,
        *,
        burst: bool = False,
    ) -> float | None:
        """Sends from the head of `queue` with up to `window` sends in flight, each started
        as soon as there is room, in queue order (an adapter that declares a window keeps
        wire order for concurrent sends). Finished items leave the queue. Returns None
        when the queue is done, or the delay before retrying the items that failed, once
        every send in flight has settled: nothing started after a failure, so a later
        item cannot overtake a failed one for longer than the window already in flight.

        An item whose send first looks up an id (edit, delete, reply) goes alone, so no
        lookup can let a later send overtake it on the wire. With `burst`, only the run of
        reactions at the head is sent so (the adapter sends one at a time otherwise)."""
        inflight: deque[tuple[Item, asyncio.Future[float | None]]] = deque()
        try:
            return await self._fill(
                key, adapter, queue, window=window, bound=bound, inflight=inflight, burst=burst
            )
        finally:
            # The worker owns its sends: one cancelled (aclose, a reload) takes its
            # in-flight sends with it, and waits until they have stopped.
            pending = [task for _, task in inflight if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _fill(
        self,
        key: tuple[str, str],
        adapter: Adapter,
        queue: deque[Item],
        *,
        window: int,
        bound: Any,
        inflight: deque[tuple[Item, asyncio.Future[float | None]]],
        burst: bool = False,
    ) -> float | None:
        finished: set[int] = set()
        delays: list[float] = []
        started = 0  # items of `queue` before this index were started
        while True:
            while not delays and started < len(queue) and len(inflight) < window:
                item = queue[started]
                if burst and not isinstance(item.event, Reaction):
                    break  # a message waits for the reactions before it, as always here
                alone = _needs_lookup(item) or _target_in_flight(item, inflight)
                if alone and inflight:
                    break
                await self._pace(key)
                task = asyncio.get_running_loop().create_task(
                    self._attempt(adapter, item, bound), name=f"send:{item.txn_id}"
                )
                inflight.append((item, task))
                started += 1
                await asyncio.sleep(0)  # let it write before the next one starts
                if task.done() and task.result() is not None:
                    # Refused before it was written: nothing more starts until its retry.
                    delays.append(cast(float, task.result()))
                    inflight.pop()
                if alone:
                    break
            if not inflight:
                break
            if await self._arrived_first(
                key, queue, started=started, window=window, delays=delays, inflight=inflight
            ):
                continue  # items joined the queue: start them beside the sends in flight
            head, settling = inflight.popleft()
            delay = await settling
            if delay is None:
                finished.add(id(head))
            else:
                delays.append(delay)
            while queue and id(queue[0]) in finished:
                finished.discard(id(queue.popleft()))
                started -= 1
        if finished:
            kept = [item for item in queue if id(item) not in finished]
            queue.clear()
            queue.extend(kept)
        return max(delays) if delays else None

    async def _arrived_first(
        self,
        key: tuple[str, str],
        queue: deque[Item],
        *,
        started: int,
        window: int,
        delays: list[float],
        inflight: deque[tuple[Item, asyncio.Future[float | None]]],
    ) -> bool:
        """Waits for the oldest send in flight to settle or, while the window has room
        and nothing stands in the way, for new items to join the queue, whichever comes
        first; True for the latter. Without it a steady trickle into a windowed
        destination would go one send at a time whenever a send is slow to settle."""
        settling = inflight[0][1]
        if (
            settling.done()
            or delays
            or started < len(queue)  # waiting ones cannot start yet (a lookup goes alone)
            or len(inflight) >= window
            or any(_needs_lookup(item) for item, _ in inflight)  # it goes alone
        ):
            return False
        arrived = self._arrivals.setdefault(key, asyncio.Event())
        arrived.clear()
        waiter = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait((settling, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        return not settling.done() and started < len(queue)

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
                done = [item, *item.replaces]
                await self.db.transact(lambda c: _delete(c, *done))
                for i in done:
                    self._uncount(i)
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
        self._records.add(item, remote_id)
        self._uncount(item)
        for earlier in item.replaces:  # said by this one's line (`editwindow`)
            self._records.add(earlier, "")
            self._uncount(earlier)
        stats.sent += 1
        bound.debug("relayed", event_id=item.event.id, remote_id=remote_id)
        return None

    def _settled(self) -> None:
        if not self._records and not self.depth():
            self._idle.set()

    async def _outgoing(self, item: Item) -> Outgoing | None:
        event = item.event
        target: RemoteId | None = None
        reply_to: RemoteId | None = None
        caps = self.adapters[item.network].capabilities
        if isinstance(event, Edit) and not caps.edits:
            correction = as_correction(event, caps)
            if correction is None:
                return None  # nothing visible changed: nothing to say
            event = correction
        elif isinstance(event, Edit | Delete):
            target = await self.ids.remote_for(event.target, item.network, item.room)
            if target is None:
                if isinstance(event, Delete):
                    return None  # its message never reached this room: nothing to delete
                correction = as_correction(event, caps)
                if correction is None:
                    return None
                event = correction
        elif isinstance(event, Message) and event.reply_to is not None:
            reply_to = await self.ids.remote_for(event.reply_to, item.network, item.room)
        elif isinstance(event, Reaction):
            target = await self.ids.remote_for(event.target, item.network, item.room)
            if target is None and not await self._said_in(event.target, item):
                return None  # its message never reached this room: nothing to react to
        thread: RemoteId | None = None
        if isinstance(event, Message) and event.thread is not None:
            thread = await self.ids.remote_for(event.thread, item.network, item.room)
        return Outgoing(
            room=item.room, event=event, target=target, reply_to=reply_to, txn_id=item.txn_id,
            thread=thread,
        )  # fmt: skip

    async def _said_in(self, event_id: str, item: Item) -> bool:
        """Whether the message `event_id` was said in `item`'s room itself: where the
        network gives its messages no id (ngircd), the id map cannot say so, and a
        reaction to it is still shown there (as a line, with no target to name)."""

        def q(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT payload FROM messages WHERE event_id = ?", (event_id,)
            ).fetchone()
            return str(row[0]) if row else None

        payload = await self.db.read(q)
        if payload is None:
            return False
        said = codec.loads(self.sealer.open(payload, table="messages", key=event_id))
        return (said.origin.network, said.origin.room) == (item.network, item.room)

    async def _fail(self, item: Item, reason: str, bound: Any) -> None:
        done = [item, *item.replaces]

        def w(conn: Conn) -> None:
            # The payload goes: the archive holds the event and this failure, and a copy
            # kept here would outlive the archive's retention and encryption.
            for i in done:
                conn.execute(
                    "UPDATE outbox SET state = 'failed', payload = '', attempts = ?,"
                    " last_error = ? WHERE seq = ?",
                    (item.attempts, reason, i.seq),
                )
                self.recorder.record_delivery(
                    conn, i.event.id, i.dest, remote_id=None, error=reason
                )

        await self.db.transact(w)
        for i in done:
            self._uncount(i)
        self.stats.setdefault(item.network, OutboxStats()).failed += 1
        bound.error("send_failed", event_id=item.event.id, error=reason)

    async def watch(self, interval: float) -> None:
        """With other instances: every `interval` seconds, finds what they queued for
        the networks this one sends to. Their commits and ours take turns on one lock,
        so sequence numbers are in commit order and `seq > last seen` misses nothing."""

        def q(conn: Conn) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT network, room, seq FROM outbox"
                " WHERE state = 'pending' AND seq > ? ORDER BY seq",
                (self._watermark,),
            ).fetchall()

        while not self._closing:
            for network, room, seq in await self.db.read(q):
                self._watermark = max(self._watermark, int(seq))
                self._note((network, room), int(seq))
            await asyncio.sleep(interval)

    def _note(self, key: tuple[str, str], seq: int) -> None:
        """One pending row of a destination this instance sends to, seen once whether
        its commit woke it here or `watch` found it first: its worker reads it back."""
        if not self.owns(key[0]):
            return
        noted = self._spilled.get(key, (0, 0))[1]
        if seq > max(self._loaded.get(key, 0), noted):
            self._queues.setdefault(key, deque())
            self._spill(key, 1, seq)

    async def release(self, network: str) -> None:
        """Stops sending to `network` (another instance takes it over): its workers are
        cancelled with their sends in flight, its queues forgotten; every item stays in
        the database for the new owner, which resends what was not recorded (with the
        same transaction id)."""
        keys = [k for k in self._queues if k[0] == network]
        workers = [w for k in keys if (w := self._workers.pop(k, None)) and not w.done()]
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for key in keys:
            for item in self._queues.pop(key, deque()):
                self._uncount(item)
            self._loaded.pop(key, None)
            self._spilled.pop(key, None)
            self._earlier.pop(key, None)
        if not self.depth() and not self._records:
            self._idle.set()

    async def aclose(self) -> None:
        """Stops the workers; what was not delivered stays in the database."""
        self._closing = True
        workers = [w for w in self._workers.values() if not w.done()]
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _needs_lookup(item: Item) -> bool:
    event = item.event
    if isinstance(event, Reaction):
        # A reaction may land after a later message: it need not hold the window, and
        # an adapter that gathers reactions into one line (IRC) needs several in flight.
        return False
    return not isinstance(event, Message) or event.reply_to is not None or event.thread is not None


def _target_in_flight(
    item: Item, inflight: deque[tuple[Item, asyncio.Future[float | None]]]
) -> bool:
    """A reaction to a message whose copy is still being sent here: its lookup must wait
    for that copy's id, or it would find none and be dropped."""
    event = item.event
    return isinstance(event, Reaction) and any(i.event.id == event.target for i, _ in inflight)


def _delete(conn: Conn, *items: Item) -> None:
    conn.executemany(
        "DELETE FROM outbox WHERE seq = ? AND txn_id = ?", [(i.seq, i.txn_id) for i in items]
    )
