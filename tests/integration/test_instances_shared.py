"""Several instances, one config, one PostgreSQL database (issue 19): each network runs
in exactly one instance, deliveries queued in one instance reach networks another runs,
and when an instance stops, the others take its networks over and send what waits.

In-process, on memory networks, so each step can be watched; the kill -9 test with
real chat servers is tests/integration/test_instances_takeover.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.config import parse_config
from imbridge.daemon import Daemon
from imbridge.leases import SharedLeases
from imbridge.testing import eventually

THREE = """
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory}
gateways:
  g:
    rooms:
      - {network: a, room: "#a"}
      - {network: b, room: "#b"}
      - {network: c, room: "#c"}
"""


@pytest.fixture
async def instances(
    postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[MemoryHub, Callable[[str], asyncio.Task[Daemon]]]]:
    hub = MemoryHub()
    started: list[Daemon] = []

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    async def start(name: str, extra: str = "") -> Daemon:
        state = tmp_path / name
        state.mkdir()
        config = parse_config(
            f"bridge: {{state_dir: '{state}', database: '{postgres_url}', instance: {name},"
            f" log: {{level: debug}}}}\n{THREE}{extra}"
        )
        daemon = Daemon(config, factory=build)
        await daemon.start()
        started.append(daemon)
        return daemon

    yield hub, start  # type: ignore[misc]
    for daemon in reversed(started):
        await daemon.stop(drain=0)


def runs(daemon: Daemon) -> set[str]:
    assert isinstance(daemon.leases, SharedLeases)
    return set(daemon.leases.held)


async def test_two_instances_share_the_networks_and_relay_across(instances: Any) -> None:
    hub, start = instances
    one = await start("one")
    assert runs(one) == {"a", "b", "c"}  # alone: it runs everything
    two = await start("two")
    # Two instances: `one` gives up what passes its fair share, `two` takes it.
    await eventually(lambda: len(runs(one)) == 2 and len(runs(two)) == 1, what="sharing")
    assert runs(one) | runs(two) == {"a", "b", "c"}
    await eventually(lambda: all(two.adapters[n].connected for n in runs(two)), what="up")
    for network in "abc":  # from each network, to the two others, whoever runs them
        hub.post(f"#{network}", "alice", f"from {network}")

    def arrived(n: str) -> bool:
        return all(f"<alice@{n}> from {n}" in hub.texts(f"#{o}") for o in "abc" if o != n)

    for network in "abc":
        await eventually(lambda n=network: arrived(n), what=f"relay from {network}")  # type: ignore[misc]
    for network in "abc":  # and exactly once
        assert sorted(hub.texts(f"#{network}")) == sorted(
            [f"from {network}"] + [f"<alice@{o}> from {o}" for o in "abc" if o != network]
        )


async def test_a_stopped_instance_networks_are_taken_over(instances: Any) -> None:
    hub, start = instances
    one = await start("one")
    two = await start("two")
    await eventually(lambda: len(runs(two)) == 1, what="sharing")
    await one.stop(drain=0)
    await eventually(lambda: runs(two) == {"a", "b", "c"}, timeout=15, what="takeover")
    await eventually(lambda: all(two.adapters[n].connected for n in "abc"), what="connected")
    hub.post("#b", "bob", "after the takeover")
    await eventually(
        lambda: (
            "<bob@b> after the takeover" in hub.texts("#a")
            and "<bob@b> after the takeover" in hub.texts("#c")
        ),
        what="relay by two",
    )
    states = two.network_states()
    assert {n: s["owner"] for n, s in states.items()} == {"a": "two", "b": "two", "c": "two"}


async def test_instances_with_different_configs_are_reported(instances: Any) -> None:
    _, start = instances
    one = await start("one")
    two = await start("two", "policy:\n  rules:\n    - {name: r, action: deny, text: secret}\n")
    await eventually(lambda: one.leases.mismatch == ["two"], what="one sees the mismatch")
    await eventually(lambda: two.leases.mismatch == ["one"], what="two sees the mismatch")
    # Reported, not merged: each goes on with its own file.
    assert one.config.policy != two.config.policy


async def test_a_reload_to_the_same_config_clears_the_mismatch(
    instances: Any, tmp_path: Path, postgres_url: str
) -> None:
    _, start = instances
    deny = "policy:\n  rules:\n    - {name: r, action: deny, text: secret}\n"
    one = await start("one")
    two = await start("two", deny)
    await eventually(lambda: one.leases.mismatch == ["two"], what="the mismatch")
    # `one` is reloaded with the file `two` runs: they agree again, and both see it.
    state = tmp_path / "one"
    same = parse_config(
        f"bridge: {{state_dir: '{state}', database: '{postgres_url}', instance: one,"
        f" log: {{level: debug}}}}\n{THREE}{deny}"
    )
    assert await one.reload(same)
    await eventually(lambda: one.leases.mismatch == [] and two.leases.mismatch == [], what="agreed")
