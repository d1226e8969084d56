"""The daemon owns its tasks: a failing one is logged with its network and restarted, a
stop waits for a reload under way, and a failing step of stop still closes the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from imbridge.adapter import Cursors, NetworkConfig, Outgoing
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.daemon import Daemon
from imbridge.events import RemoteId
from imbridge.tasks import TaskTree
from tests.unit.conftest import TWO_ROOMS, StartDaemon, config_for, until

ARCHIVED = TWO_ROOMS + 'archive: {enabled: true, notice: "This room is archived."}\n'


async def test_a_failing_notice_is_logged_with_its_network_and_retried(
    tmp_path: Path,
) -> None:
    """Posting the archive notice fails once: the network says so in the log (it used to
    stay silently not ready) and is restarted until it is ready and the notice is out."""
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    daemon = Daemon(config_for(tmp_path, ARCHIVED), factory=build)
    assert daemon.archive is not None
    real = daemon.archive.notice_due
    broken = {"a"}

    async def notice_due(network: str, room: str) -> str | None:
        if network in broken:
            broken.discard(network)
            raise OSError("disk full")
        return await real(network, room)

    daemon.archive.notice_due = notice_due  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        await daemon.start()
        try:
            assert await daemon.ready(10)
            await until(lambda: [p.text for p in hub.in_room("#x")] == ["This room is archived."])
        finally:
            await daemon.stop(drain=0)
    failed = [e for e in logs if e["event"] == "task_failed"]
    assert len(failed) == 1
    assert failed[0]["network"] == "a"
    assert "disk full" in failed[0]["error"]
    assert any(e["event"] == "network_restarting" and e["network"] == "a" for e in logs)


async def test_stop_during_a_reload_waits_for_it_and_closes_what_it_opened(
    tmp_path: Path,
) -> None:
    """SIGTERM during a SIGHUP reload: the stop waits until the reload is done, then
    closes every adapter, including the one the reload built (none is left connected)."""
    hub = MemoryHub()
    gate = asyncio.Event()
    closing = asyncio.Event()

    class SlowToClose(MemoryAdapter):
        async def aclose(self) -> None:
            closing.set()
            await gate.wait()
            await super().aclose()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return SlowToClose(name, net, cursors, hub)

    daemon = Daemon(config_for(tmp_path, TWO_ROOMS), factory=build)
    await daemon.start()
    assert await daemon.ready(5)
    changed = config_for(
        tmp_path, TWO_ROOMS.replace("b: {type: memory}", "b: {type: memory, nick: relay2}")
    )
    reload = asyncio.create_task(daemon.reload(changed))
    await closing.wait()  # the reload is dropping the old `b`
    stop = asyncio.create_task(daemon.stop(drain=0))
    await asyncio.sleep(0)
    gate.set()
    assert await reload is True
    await stop
    assert hub._members == []
    rebuilt = daemon.adapters["b"]
    assert isinstance(rebuilt, MemoryAdapter)
    assert rebuilt.config == changed.networks["b"]


async def test_a_reload_after_stop_changes_nothing(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon()
    await daemon.stop(drain=0)
    assert await daemon.reload(daemon.config) is False
    assert hub._members == []


async def test_stop_closes_the_database_even_when_a_step_fails(
    start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, _ = await start_daemon()
    assert daemon.outbox is not None

    async def broken() -> None:
        raise RuntimeError("outbox bug")

    monkeypatch.setattr(daemon.outbox, "aclose", broken)
    with structlog.testing.capture_logs() as logs:
        await daemon.stop(drain=0)
    assert any(e["event"] == "close_failed" and e.get("part") == "outbox" for e in logs)
    with pytest.raises(Exception, match="not open"):
        await daemon.db.read(lambda c: c.execute("SELECT 1").fetchone())


async def test_outbox_cancels_its_sends_in_flight_on_close(start_daemon: StartDaemon) -> None:
    """With a send window, sends run beside the queue's worker; closing the outbox must
    stop them, not leave them writing after the daemon let go of the adapter."""
    daemon, hub = await start_daemon(
        TWO_ROOMS.replace("b: {type: memory}", "b: {type: memory, capabilities: {send_window: 4}}")
    )
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    started: list[str] = []
    cancelled: list[str] = []

    async def hanging_send(item: Outgoing) -> RemoteId:
        started.append(item.txn_id)
        try:
            await asyncio.Event().wait()  # a server that never answers
        except asyncio.CancelledError:
            cancelled.append(item.txn_id)
            raise
        raise AssertionError("unreachable")

    b.send = hanging_send  # type: ignore[method-assign]
    for i in range(3):
        hub.post("#x", "alice", f"h{i}")
    await until(lambda: len(started) == 3, explain=lambda: f"started: {started}")
    assert daemon.outbox is not None
    await daemon.outbox.aclose()
    assert sorted(cancelled) == sorted(started)


async def test_task_tree_logs_a_failure_and_tells_its_owner() -> None:
    told: list[str] = []
    with structlog.testing.capture_logs() as logs:
        async with TaskTree("t", on_failure=lambda name, exc: told.append(name)) as tree:

            async def boom() -> None:
                raise ValueError("bad")

            async def forever() -> None:
                await asyncio.Event().wait()

            task = tree.spawn(boom(), name="boom", network="n1")
            await asyncio.wait([task])
            hang = tree.spawn(forever(), name="hang")
        assert hang.cancelled()
    assert told == ["boom"]
    assert [(e["event"], e["task"], e["network"]) for e in logs] == [("task_failed", "boom", "n1")]
    with pytest.raises(RuntimeError, match="closed"):
        tree.spawn(asyncio.sleep(0), name="late")


async def test_reload_leaves_the_rooms_no_gateway_uses_any_more(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A removed room used to keep its relay (and its traffic reaching the archive)."""
    two_gateways = """
networks: {a: {type: memory}, b: {type: memory}}
gateways:
  keep: {rooms: [{network: a, room: "#x"}, {network: b, room: "#y"}]}
  gone: {rooms: [{network: a, room: "#old"}, {network: b, room: "#OLD-b"}]}
"""
    daemon, _ = await start_daemon(two_gateways)
    a, b = daemon.adapters["a"], daemon.adapters["b"]
    assert isinstance(a, MemoryAdapter)
    assert isinstance(b, MemoryAdapter)
    assert a.joined == {"#x", "#old"}
    one_gateway = two_gateways.split("  gone:", maxsplit=1)[0]
    assert await daemon.reload(config_for(tmp_path, one_gateway))
    assert a.joined == {"#x"}
    assert b.joined == {"#y"}
