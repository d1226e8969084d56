"""The outbox on memory adapters: order under failures, permanent errors, restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from imbridge import outbox as outbox_module
from imbridge.adapter import Outgoing
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import RemoteId
from imbridge.outbox import BACKOFF_CAP, backoff, txn_id_for
from imbridge.ratelimit import TokenBucket
from tests.unit.conftest import StartDaemon, settle, until


def texts(hub: MemoryHub, room: str) -> list[str]:
    return [p.text for p in hub.in_room(room)]


async def test_retryable_failures_back_off_then_deliver_in_order(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.failures.extend(RetryableSendError("throttled") for _ in range(3))
    for i in range(10):
        hub.post("#x", "alice", f"n{i}")
    await until(lambda: len(texts(hub, "#y")) == 10)
    assert texts(hub, "#y") == [f"<alice@a> n{i}" for i in range(10)]
    assert daemon.outbox is not None
    assert daemon.outbox.stats["b"].retries == 3


async def test_server_retry_hint_is_honoured(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.failures.append(RetryableSendError("429", retry_after=0.05))
    hub.post("#x", "alice", "later")
    await until(lambda: texts(hub, "#y") == ["<alice@a> later"])


async def test_permanent_failure_is_recorded_and_the_queue_goes_on(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.failures.append(PermanentSendError("too big"))
    hub.post("#x", "alice", "first")
    hub.post("#x", "alice", "second")
    await until(lambda: texts(hub, "#y") == ["<alice@a> second"])
    assert daemon.outbox is not None
    assert daemon.outbox.stats["b"].failed == 1

    rows = await daemon.db.read(
        lambda c: c.execute("SELECT state, last_error FROM outbox").fetchall()
    )
    assert rows == [("failed", "too big")]


async def test_offline_destination_keeps_messages_until_it_is_back(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.online = False
    for i in range(5):
        hub.post("#x", "alice", f"q{i}")
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 5)
    b.online = True
    await until(lambda: len(texts(hub, "#y")) == 5)
    assert texts(hub, "#y") == [f"<alice@a> q{i}" for i in range(5)]


async def test_restart_delivers_what_was_queued_exactly_once(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.online = False
    for i in range(7):
        hub.post("#x", "alice", f"r{i}")
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 7)
    await daemon.stop(drain=0)

    hub2 = MemoryHub()
    again, _ = await start_daemon(hub=hub2, state=tmp_path)
    await until(lambda: len(texts(hub2, "#y")) == 7)
    await settle(again)
    assert texts(hub2, "#y") == [f"<alice@a> r{i}" for i in range(7)]


async def test_a_long_outage_keeps_only_a_few_items_in_memory_and_loses_none(
    start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "MEMORY_QUEUE", 4)
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    assert daemon.outbox is not None
    outbox = daemon.outbox
    b.online = False
    for i in range(50):
        hub.post("#x", "alice", f"s{i}")
    await until(lambda: outbox.depth("b") == 50)
    assert len(outbox._queues[("b", "#y")]) <= 4  # the other 46 wait on disk only
    b.online = True
    # More arrive while the backlog is read back from disk: they queue behind it.
    for i in range(50, 80):
        hub.post("#x", "alice", f"s{i}")
        await asyncio.sleep(0.001)
    await until(lambda: len(texts(hub, "#y")) >= 80)
    await settle(daemon)
    assert texts(hub, "#y") == [f"<alice@a> s{i}" for i in range(80)]
    assert outbox.depth() == 0


async def test_restart_reads_a_long_backlog_back_in_order_exactly_once(
    start_daemon: StartDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "MEMORY_QUEUE", 4)
    daemon, hub = await start_daemon()
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.online = False
    for i in range(30):
        hub.post("#x", "alice", f"t{i}")
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 30)
    await daemon.stop(drain=0)

    hub2 = MemoryHub()
    again, _ = await start_daemon(hub=hub2, state=tmp_path)
    assert again.outbox is not None
    await until(lambda: len(texts(hub2, "#y")) >= 30)
    await settle(again)
    assert texts(hub2, "#y") == [f"<alice@a> t{i}" for i in range(30)]
    assert again.outbox.depth() == 0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    assert backoff(1, lambda: 0.0) == 0.25
    assert backoff(1, lambda: 0.999) < 0.75
    assert backoff(3, lambda: 0.5) == 2.0
    assert backoff(50, lambda: 0.5) == BACKOFF_CAP


def test_txn_id_is_stable_per_event_and_destination() -> None:
    assert txn_id_for("e1", "net", "#r") == txn_id_for("e1", "net", "#r")
    assert txn_id_for("e1", "net", "#r") != txn_id_for("e1", "net", "#s")
    assert txn_id_for("e1", "net", "#r") != txn_id_for("e2", "net", "#r")


def test_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.5
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0


async def test_rate_limit_paces_a_destination(start_daemon: StartDaemon) -> None:
    _, hub = await start_daemon("""
networks:
  a: {type: memory}
  b: {type: memory, rate_limit: {per_second: 50, burst: 2}}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
""")
    start = time.monotonic()
    for i in range(12):
        hub.post("#x", "alice", f"p{i}")
    await until(lambda: len(texts(hub, "#y")) == 12)
    # 2 at once, then 10 more at 50/s: at least 0.2 s (a property of the bucket, not
    # a performance assertion: it holds on any machine).
    assert time.monotonic() - start >= 0.19


WINDOWED = """
networks:
  a: {type: memory}
  b: {type: memory, capabilities: {send_window: 8}}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
"""


async def test_send_window_keeps_order_and_delivers_each_once(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(WINDOWED)
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    in_flight = 0
    most = 0
    real_send = b.send

    async def slow_send(item: Outgoing) -> RemoteId:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            remote_id = await real_send(item)  # posts at once, like a stream write
            await asyncio.sleep(0.01)  # then waits for the server's echo
            return remote_id
        finally:
            in_flight -= 1

    b.send = slow_send  # type: ignore[method-assign]
    for i in range(40):
        hub.post("#x", "alice", f"w{i}")
    await until(lambda: len(texts(hub, "#y")) == 40)
    await settle(daemon)
    assert texts(hub, "#y") == [f"<alice@a> w{i}" for i in range(40)]
    assert 1 < most <= 8


async def test_send_window_retries_a_refused_send_without_duplicates_or_overtaking(
    start_daemon: StartDaemon,
) -> None:
    """A send refused before it was written (the adapter was not in the room yet) must not
    be overtaken by the later sends of its window, which would have gone through."""
    daemon, hub = await start_daemon(WINDOWED)
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.online = False
    for i in range(20):
        hub.post("#x", "alice", f"f{i}")
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 20)
    b.failures.append(RetryableSendError("not in the room yet"))
    b.online = True
    await until(lambda: len(texts(hub, "#y")) == 20)
    await settle(daemon)
    assert texts(hub, "#y") == [f"<alice@a> f{i}" for i in range(20)]
    assert daemon.outbox is not None
    assert daemon.outbox.stats["b"].retries == 1
