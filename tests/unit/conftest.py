"""Core tests wire memory adapters together through the real daemon: no mocks."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from imbridge import testing
from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.config import parse_config
from imbridge.config.schema import Config
from imbridge.daemon import Daemon

until = functools.partial(
    testing.eventually, interval=0.005
)  # the name these tests knew; the helper is imbridge.testing's

TWO_ROOMS = """
networks:
  a: {type: memory}
  b: {type: memory}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
"""


def config_for(tmp_path: Path, body: str, database: str | None = None) -> Config:
    at = f", database: '{database}'" if database else ""
    return parse_config(f"bridge: {{state_dir: '{tmp_path}'{at}, log: {{level: debug}}}}\n{body}")


StateDatabase = Callable[[Path], "str | None"]


@pytest.fixture
def state_database() -> StateDatabase:
    """Which state database a daemon with a given `state_dir` runs on: None, SQLite in
    that folder. tests/integration/test_core_postgresql.py runs the same tests with a
    PostgreSQL database per folder here (a server is a subprocess: not for unit tests)."""
    return lambda folder: None


@pytest.fixture
def db_location(tmp_path: Path, state_database: StateDatabase) -> Path | str:
    """Where a test's own `Database` lives, on the engine under test."""
    return state_database(tmp_path) or tmp_path / "s.db"


async def settle(daemon: Daemon) -> None:
    """Waits until the daemon's outbox is empty (every queued delivery done)."""
    assert daemon.outbox is not None
    assert await daemon.outbox.wait_idle(5)


StartDaemon = Callable[..., Awaitable[tuple[Daemon, MemoryHub]]]


@pytest.fixture
async def start_daemon(tmp_path: Path, state_database: StateDatabase) -> AsyncIterator[StartDaemon]:
    """Starts a daemon on memory adapters sharing one hub; stops it after the test."""
    started: list[Daemon] = []

    async def start(
        body: str = TWO_ROOMS, *, hub: MemoryHub | None = None, state: Path | None = None
    ) -> tuple[Daemon, MemoryHub]:
        shared = hub or MemoryHub()

        def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
            return MemoryAdapter(name, net, cursors, shared)

        folder = state or tmp_path
        config = config_for(folder, body, state_database(folder))
        daemon = Daemon(config, factory=build)
        await daemon.start()
        started.append(daemon)
        assert await daemon.ready(5)
        if daemon.outbox is not None:
            daemon.outbox.backoff_base = 0.01
        return daemon, shared

    yield start
    for daemon in started:
        if not daemon.stopping:
            await daemon.stop(drain=0)
