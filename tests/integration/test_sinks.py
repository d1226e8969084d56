"""Record sinks against real receivers on loopback: a syslog server (RFC 5424 over TCP,
octet-counted, this test's own listener) and an HTTP event collector (aiohttp, bearer
token) receive every archive record of a 500-message stream, each stopped for 20 s
mid-stream and started again on the same port: every record arrives, in order, and no
more than one batch twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.config import parse_config
from imbridge.daemon import Daemon
from imbridge.testing import write_secret
from tests.servers.ircd import eventually
from tests.servers.process import free_port

pytestmark = pytest.mark.integration

BATCH = 100
OUTAGE = 20.0
FRAME = re.compile(rb"(\d+) ")


class SyslogReceiver:
    """Reads octet-counted RFC 5424 messages; keeps the JSON of each."""

    def __init__(self) -> None:
        self.port = free_port()
        self.records: list[dict[str, Any]] = []
        self.malformed = 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                head = await reader.readuntil(b" ")
                size = int(FRAME.fullmatch(head).group(1))  # type: ignore[union-attr]
                message = await reader.readexactly(size)
                if not re.match(rb"<\d{1,3}>1 ", message):
                    self.malformed += 1
                self.records.append(json.loads(message[message.index(b" {") + 1 :]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            await self._server.wait_closed()
            self._server = None


class Collector:
    """An HTTP event collector: JSON lines per POST, behind a bearer token."""

    def __init__(self, token: str) -> None:
        self.port = free_port()
        self.token = token
        self.records: list[dict[str, Any]] = []
        self.refused = 0
        self._runner: web.AppRunner | None = None

    async def ingest(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.refused += 1
            return web.Response(status=401)
        body = await request.text()
        self.records += [json.loads(line) for line in body.splitlines()]
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/ingest", self.ingest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [r["seq"] for r in records if r["kind"] != "head"]


def check_complete(got: list[int], last: int) -> int:
    """Every record 1..last (and any after it), in order, each repeat only a re-send;
    returns the repeats."""
    seen: set[int] = set()
    firsts = []
    for s in got:
        if s not in seen:
            seen.add(s)
            firsts.append(s)
    assert len(firsts) >= last
    assert firsts == list(range(1, len(firsts) + 1))
    return len(got) - len(firsts)


async def test_syslog_and_http_collector_get_every_record_across_a_20s_outage_each(
    tmp_path: Path,
) -> None:
    syslog, collector = SyslogReceiver(), Collector("s3cret-token")
    write_secret(tmp_path / "hec.token", "s3cret-token\n")
    await syslog.start()
    await collector.start()
    config = parse_config(
        json.dumps({
            "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
            "networks": {"a": {"type": "memory"}, "b": {"type": "memory"}},
            "gateways": {"g": {"rooms": [{"network": "a", "room": "#x"},
                                         {"network": "b", "room": "#y"}]}},
            "archive": {"checkpoint_seconds": 2, "sinks": [
                {"name": "siem", "type": "syslog", "address": f"tcp://127.0.0.1:{syslog.port}",
                 "batch": BATCH, "timeout_seconds": 5},
                {"name": "hec", "type": "http", "url": f"http://127.0.0.1:{collector.port}/ingest",
                 "token_file": str(tmp_path / "hec.token"), "batch": BATCH},
            ]},
        }),
        base=tmp_path,
    )  # fmt: skip
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    restarts: list[asyncio.Task[None]] = []

    async def outage(receiver: SyslogReceiver | Collector) -> None:
        await asyncio.sleep(OUTAGE)
        await receiver.start()

    try:
        async with Daemon(config, factory=build) as daemon:
            assert await daemon.ready(10)
            for i in range(500):
                hub.post("#x", "alice", f"line {i}")
                if i == 100:
                    await syslog.stop()
                    restarts.append(asyncio.create_task(outage(syslog)))
                if i == 200:
                    await collector.stop()
                    restarts.append(asyncio.create_task(outage(collector)))
                if i == 300:
                    states = daemon.sink_states()
                    assert not states["siem"]["up"]
                    assert states["siem"]["lag"] > 0
                await asyncio.sleep(0.03)
            await eventually(lambda: len([p for p in hub.in_room("#y")]) == 500, what="relayed")
            await asyncio.gather(*restarts)

            def tail() -> int:
                return max(int(daemon.sink_states()[n]["cursor"]) for n in ("siem", "hec"))

            async def last_seq() -> int:
                row = await daemon.db.read(
                    lambda c: c.execute("SELECT seq FROM archive_chain").fetchone()
                )
                return int(row[0])

            last = await last_seq()
            await eventually(
                lambda: min(max(seqs(r.records), default=0) for r in (syslog, collector)) >= last,
                timeout=60,
                what="both sinks caught up",
                explain=lambda: (
                    f"head {last}, sinks {daemon.sink_states()}, received "
                    f"{[r['seq'] for r in syslog.records[-3:]]} and "
                    f"{[(r['seq'], r['kind']) for r in collector.records[-3:]]}"
                ),
            )
            assert tail() >= last
            # Records may still be appended (the last deliveries' outcomes): the lag each
            # sink reports comes down to nothing once they are shipped too.
            await eventually(
                lambda: all(daemon.sink_states()[n]["lag"] == 0 for n in ("siem", "hec")),
                timeout=30,
                what="no lag left on either sink",
            )
    finally:
        for task in restarts:
            task.cancel()
        with contextlib.suppress(Exception):
            await syslog.stop()
        await collector.stop()
    assert check_complete(seqs(syslog.records), last) <= BATCH
    assert check_complete(seqs(collector.records), last) <= BATCH
    assert collector.refused == 0
    assert syslog.malformed == 0
    events = [r["body"]["text"] for r in collector.records if r["kind"] == "event"]
    assert list(dict.fromkeys(events)) == [f"line {i}" for i in range(500)]
    heads = [r for r in collector.records if r["kind"] == "head"]
    assert heads
    assert all(json.loads(h["line"])["seq"] == h["seq"] for h in heads)
