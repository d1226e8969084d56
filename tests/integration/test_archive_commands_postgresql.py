"""`imbridge archive verify` and `export` on a PostgreSQL state: the whole chain walked
in batches held on the server (years of archive must not have to fit in the verifier's
or the exporter's memory), a tampered record named, as on SQLite."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.archive import export
from imbridge.commands.archive import archive_export, archive_verify
from imbridge.config import load_config
from imbridge.daemon import Daemon
from imbridge.dialect import streamed
from imbridge.engines.postgres import connect
from imbridge.testing import eventually

MESSAGES = 120
CONFIG = """
bridge: {{state_dir: "{state}", database: "{url}"}}
networks: {{a: {{type: memory}}, b: {{type: memory}}}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
"""


def verify(config: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = archive_verify(config, out=out, err=err)
    return code, out.getvalue() + err.getvalue()


async def relayed(postgres_url: str, tmp_path: Path) -> Path:
    """The config of a daemon that has relayed `MESSAGES` from #x to #y, archiving."""
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", url=postgres_url))
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    async with Daemon(load_config(path), factory=build) as daemon:
        assert await daemon.ready(10)
        for i in range(MESSAGES):
            hub.post("#x", "alice", f"message {i}: the quarterly figures")
        await eventually(lambda: len(hub.texts("#y")) == MESSAGES, what="every message relayed")
    return path


def export_jsonl(config: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = archive_export(config, fmt="jsonl", out=out, err=err)
    return code, out.getvalue()


async def test_export_pages_through_a_postgresql_archive_with_every_outcome(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await relayed(postgres_url, tmp_path)
    monkeypatch.setattr(export, "PAGE", 10**6)
    code, whole = await asyncio.to_thread(export_jsonl, path)
    assert code == 0
    monkeypatch.setattr(export, "PAGE", 7)  # many pages, each its own server-side cursor
    assert await asyncio.to_thread(export_jsonl, path) == (0, whole)
    items = [json.loads(line) for line in whole.splitlines()]
    texts = [i["event"]["text"] for i in items]
    assert texts == [f"message {i}: the quarterly figures" for i in range(MESSAGES)]
    for item in items:
        assert [(d["dest_room"], d["action"]) for d in item["decisions"]] == [("#y", "allow")]
        assert [d["dest_room"] for d in item["deliveries"]] == ["#y"]


async def test_verify_walks_a_postgresql_archive_and_names_a_tampered_record(
    postgres_url: str, tmp_path: Path
) -> None:
    path = await relayed(postgres_url, tmp_path)
    code, output = await asyncio.to_thread(verify, path)  # the command runs its own loop
    assert code == 0, output
    assert "archive intact" in output

    conn = connect(postgres_url)
    try:
        seq = conn.execute(
            "SELECT min(seq) FROM archive_records WHERE kind = 'event' AND body LIKE ?",
            ("%message 7:%",),
        ).fetchone()[0]
        conn.execute(
            "UPDATE archive_records SET body = replace(body, 'message 7:', 'message 8:')"
            " WHERE seq = ?",
            (seq,),
        )
    finally:
        conn.raw.close()
    code, output = await asyncio.to_thread(verify, path)
    assert code == 1
    assert "TAMPERED" in output
    assert f"record {seq}" in output


def test_a_streamed_walk_keeps_the_rows_it_has_not_reached_on_the_server(
    postgres_url: str,
) -> None:
    conn = connect(postgres_url)
    try:
        conn.execute("CREATE TABLE numbers (n integer)")
        conn.execute("INSERT INTO numbers SELECT generate_series(1, 10000)")
        with streamed(conn) as rows:
            cur = rows.execute("SELECT n FROM numbers ORDER BY n")
            assert [r[0] for r in cur.fetchmany(100)] == list(range(1, 101))
            # The rest waits in a cursor of this session on the server, not in the client.
            held = conn.raw.execute("SELECT count(*) FROM pg_cursors").fetchone()
            assert held is not None
            assert held[0] == 1
            rest = 0
            while batch := cur.fetchmany(1000):
                rest += len(batch)
            assert rest == 9900
        with streamed(conn) as rows:  # read-only: a walk cannot change what it checks
            cur = rows.execute("SELECT count(*) FROM numbers")
            assert cur.fetchone()[0] == 10000
    finally:
        conn.raw.close()
