"""A key rotation under a running bridge's backlog, on memory adapters through the real
daemon: deliveries queued under the old key while a destination is down, the daemon
restarted with a new key prepended, the destination back: everything arrives, in order,
once, and a reply to a message kept under the old key still quotes it. A retired key
removed while deliveries still need it stops the start, naming the key, instead of
stalling the queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.archive.keyring import Keyring
from imbridge.archive.sealing import key_id_of
from imbridge.archive.search import Query, search
from imbridge.daemon import Daemon
from imbridge.errors import ConfigError
from imbridge.testing import write_secret
from tests.unit.conftest import config_for, settle, until

OLD = "o" * 44
NEW = "n" * 44


def body(key_file: Path) -> str:
    return f"""
networks:
  a: {{type: memory, capabilities: {{replies: false}}}}
  b: {{type: memory}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
archive: {{encryption_key_file: "{key_file}"}}
"""


Start = Callable[[MemoryHub], Awaitable[Daemon]]


@pytest.fixture
async def start_with_b_down(tmp_path: Path) -> AsyncIterator[Start]:
    """Starts a daemon whose network `b` is down from its first moment, so nothing
    queued for it can slip out before the test says so."""
    started: list[Daemon] = []

    async def start(hub: MemoryHub) -> Daemon:
        def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
            adapter = MemoryAdapter(name, net, cursors, hub)
            adapter.online = name != "b"
            return adapter

        daemon = Daemon(config_for(tmp_path, body(tmp_path / "archive.key")), factory=build)
        started.append(daemon)  # stopped after the test even if its start fails
        await daemon.start()
        assert await daemon.ready(5)
        assert daemon.outbox is not None
        daemon.outbox.backoff_base = 0.01
        return daemon

    yield start
    for daemon in started:
        if daemon.outbox is not None and not daemon.outbox._closing:
            await daemon.stop(drain=0)


async def outbox_keys(daemon: Daemon) -> list[str | None]:
    rows = await daemon.db.read(
        lambda c: c.execute("SELECT payload FROM outbox WHERE state = 'pending' ORDER BY seq")
    )
    return [key_id_of(str(p)) for (p,) in rows.fetchall()]


async def test_deliveries_queued_under_the_old_key_survive_a_rotation(
    start_with_b_down: Start, tmp_path: Path
) -> None:
    write_secret(tmp_path / "archive.key", OLD + "\n")
    old_id, new_id = Keyring.parse(OLD).current.key_id, Keyring.parse(NEW).current.key_id
    hub = MemoryHub()
    daemon = await start_with_b_down(hub)
    hub.post("#x", "alice", "wombat figures for Tuesday")
    for i in range(5):
        hub.post("#x", "alice", f"q{i}")
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 6)
    assert await outbox_keys(daemon) == [old_id] * 6
    await daemon.stop(drain=0)

    # The operator rotates: a new key first, the old one kept as retired.
    write_secret(tmp_path / "archive.key", f"{NEW}\n{OLD}\n")
    again = await start_with_b_down(hub)  # the same servers: their message ids go on
    for i in range(5, 7):
        hub.post("#x", "alice", f"q{i}")
    await until(lambda: again.outbox is not None and again.outbox.depth("b") == 8)
    assert await outbox_keys(again) == [old_id] * 6 + [new_id] * 2

    b = again.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.online = True
    await until(lambda: len(hub.texts("#y")) == 8)
    await settle(again)
    assert hub.texts("#y") == [
        "<alice@a> wombat figures for Tuesday",
        *(f"<alice@a> q{i}" for i in range(7)),
    ]

    # A reply to the message kept (sealed) under the old key still quotes it.
    copy = hub.in_room("#y")[0]
    hub.post("#y", "bob", "numbat agreed", reply_to=copy.remote_id)
    await until(lambda: any("numbat" in t for t in hub.texts("#x")))
    assert hub.texts("#x")[-1] == '<bob@b> (re alice: "wombat figures for Tuesday") numbat agreed'

    # Both sides of the rotation are found by one search.
    assert again.archive is not None
    store = again.archive.store
    await again.db.transact(store.index_pending)
    hits = await again.db.read(lambda c: search(c, store, Query(text="wombat")))
    assert [h.text for h in hits] == ["wombat figures for Tuesday"]
    hits = await again.db.read(lambda c: search(c, store, Query(text="agreed")))
    assert [h.sender for h in hits] == ["bob"]


async def test_a_retired_key_removed_too_early_stops_the_start_and_loses_nothing(
    start_with_b_down: Start, tmp_path: Path
) -> None:
    write_secret(tmp_path / "archive.key", OLD)
    old_id = Keyring.parse(OLD).current.key_id
    hub = MemoryHub()
    daemon = await start_with_b_down(hub)
    for i in range(3):
        hub.post("#x", "alice", f"q{i}")
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") == 3)
    await daemon.stop(drain=0)

    write_secret(tmp_path / "archive.key", NEW)  # the old key dropped, not retired
    with pytest.raises(ConfigError) as caught:
        await start_with_b_down(hub)
    (issue,) = caught.value.issues
    assert issue.path == "archive.encryption_key"
    assert f"(3 under key {old_id})" in issue.message
    assert OLD not in str(caught.value)

    write_secret(tmp_path / "archive.key", f"{NEW}\n{OLD}")  # put back as retired
    again = await start_with_b_down(hub)
    b = again.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.online = True
    await until(lambda: len(hub.texts("#y")) == 3)
    await settle(again)
    assert hub.texts("#y") == [f"<alice@a> q{i}" for i in range(3)]
