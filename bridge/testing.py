"""Support for testing imbridge and adapters written for it (as `structlog.testing` is
for structlog): one polling helper with a deadline, the `Cursors` slot as a dict, and the
`networks.<name>` sections that reach the loopback test servers.

Tests and benchmarks import this module, never each other: a benchmark that imported a
test module would break whenever a test moved. Nothing here imports pytest or a
protocol library, so it is safe to import from the core's package.

Waiting for something that must NOT happen is never a sleep: send a sentinel after it
and wait (with `eventually`) for the sentinel; if the unwanted thing had happened it
would have arrived first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from imbridge.events import EventId, RemoteId

T = TypeVar("T")

POLL_INTERVAL = 0.02


async def eventually(
    check: Callable[[], T | None],
    timeout: float = 10.0,
    what: str = "",
    explain: Callable[[], str] | None = None,
    *,
    interval: float = POLL_INTERVAL,
) -> T:
    """Polls `check` until it returns something truthy, and returns that. After
    `timeout` seconds it fails with AssertionError naming `what` (and what `explain`
    says is missing), so a test or a benchmark stops with a clear reason."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}{detail}")
        await asyncio.sleep(interval)


class DictCursors:
    """The core's `Cursors` slot as dicts, for driving an adapter without the daemon.
    `ids` plays the id map (remote id -> event id) that the core's sink would fill."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.ids: dict[str, EventId] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value

    async def event_id(self, remote_id: RemoteId | str) -> EventId | None:
        return self.ids.get(remote_id)


class Reachable(Protocol):
    """A server listening on loopback (the fixtures' `Ircd`, `Prosody`)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class MatrixAccount(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def access_token(self) -> str: ...


def xmpp_network(server: Reachable, jid: str, password: str, **extra: Any) -> dict[str, Any]:
    """A `type: xmpp` client section on the test server's plain port; `extra` adds or
    overrides keys (`ack_timeout`, `rate_limit`, ...)."""
    section: dict[str, Any] = {
        "type": "xmpp", "jid": jid, "password": password, "host": server.host,
        "port": server.port, "tls": "plain", "nick": "relay",
    }  # fmt: skip
    return section | extra


def matrix_network(homeserver: str, account: MatrixAccount, **extra: Any) -> dict[str, Any]:
    """A `type: matrix` section logged in with `account`'s token; `extra` adds or
    overrides keys (`sync_timeout_ms`, `rate_limit`, ...)."""
    section: dict[str, Any] = {
        "type": "matrix", "homeserver": homeserver, "user_id": account.user_id,
        "access_token": account.access_token,
    }  # fmt: skip
    return section | extra


def irc_network(server: Reachable, **extra: Any) -> dict[str, Any]:
    """A plain-text `type: irc` section; the IRC fixture's `network()` adds its flood
    settings on top of this."""
    section: dict[str, Any] = {
        "type": "irc", "host": server.host, "port": server.port, "tls": False, "nick": "relay",
        "reconnect_min_delay": 0.2, "reconnect_max_delay": 2.0,
    }  # fmt: skip
    return section | extra


def write_secret(path: Path, content: str | bytes) -> Path:
    """Writes a secret file the way an operator must: private to its owner (0600). The
    config loader refuses `*_file` secrets the group or others may read, and the default
    umask makes 0644 files, so a test that hands the bridge a secret file writes it here."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        f.write(data)
    return path


__all__ = [
    "DictCursors",
    "MatrixAccount",
    "Reachable",
    "eventually",
    "irc_network",
    "matrix_network",
    "sqlite_schema",
    "write_secret",
    "xmpp_network",
]


def archive_hits(config: Path, words: str) -> list[dict[str, Any]]:
    """What `imbridge archive search --format json` finds for `words` with the config at
    `config`, run in-process: what a reviewer would see, without a subprocess per query."""
    import importlib  # noqa: PLC0415 - the command pulls in the archive, tests only need it here
    import io  # noqa: PLC0415
    import json  # noqa: PLC0415

    module = importlib.import_module("imbridge.commands.archive")
    out, err = io.StringIO(), io.StringIO()
    code = module.archive_search(config, words, fmt="json", out=out, err=err)
    assert code == 0, err.getvalue()  # noqa: S101 - a test helper
    return list(json.loads(out.getvalue()))


def sqlite_schema(conn: Any, steps: Any) -> None:
    """Creates a component's tables on a bare `sqlite3` connection, as the migrations
    of `imbridge.db` would: for tests and benchmarks that build or attack a state file
    without a `Database`."""
    from imbridge.dialect import SQLITE, script_for  # noqa: PLC0415 - few callers need it

    for step in steps:
        conn.executescript(script_for(step, SQLITE))
