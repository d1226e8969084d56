"""Record sinks on memory adapters: a JSON-lines file sink receives every archive record
in order with the signed heads, rotates by size, resumes from its cursor after a
restart without repeating what it shipped, and shows its lag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imbridge.adapters.memory import MemoryHub
from imbridge.daemon import Daemon
from imbridge.sinks import formats
from imbridge.sinks.feed import Shipped
from tests.unit.conftest import StartDaemon, settle, until

ROOMS = """
networks:
  a: {{type: memory}}
  b: {{type: memory}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
archive:
  checkpoint_seconds: 0.2
  sinks:
    - {{name: shipper, type: file, path: "{path}", max_bytes: {max_bytes}, keep: 50, batch: 7}}
"""


def shipped(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    out: list[dict[str, Any]] = []
    for f in [*files, path]:
        if f.exists():
            out += [json.loads(line) for line in f.read_text().splitlines()]
    return out


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [r["seq"] for r in records if r["kind"] != "head"]


async def tail(daemon: Daemon) -> int:
    return int(
        await daemon.db.read(lambda c: c.execute("SELECT seq FROM archive_chain").fetchone()[0])
    )


async def test_file_sink_gets_every_record_in_order_with_heads_and_rotates(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "out" / "records.jsonl"
    daemon, hub = await start_daemon(ROOMS.format(path=path, max_bytes=8192))
    for i in range(40):
        hub.post("#x", "alice", f"message {i}")
    await until(lambda: len([p for p in hub.in_room("#y")]) == 40)
    await settle(daemon)
    last = await tail(daemon)
    await until(lambda: seqs(shipped(path))[-1:] == [last], timeout=10)
    records = shipped(path)
    assert seqs(records) == list(range(1, last + 1))
    kinds = {r["kind"] for r in records}
    assert {"event", "decision", "delivery", "head", "config"} <= kinds
    texts = [r["body"]["text"] for r in records if r["kind"] == "event"]
    assert texts == [f"message {i}" for i in range(40)]
    head = next(r for r in records if r["kind"] == "head")
    assert json.loads(head["line"])["sig"] == head["sig"]
    assert len(list(path.parent.glob("records.jsonl.*"))) >= 2  # rotated by size
    assert daemon.sinks is not None
    await until(lambda: daemon.sink_states()["shipper"]["lag"] == 0)


async def test_file_sink_resumes_from_its_cursor_after_a_restart(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "records.jsonl"
    body = ROOMS.format(path=path, max_bytes=1 << 30)
    hub = MemoryHub()
    daemon, _ = await start_daemon(body, hub=hub)
    hub.post("#x", "alice", "before")
    await settle(daemon)
    first = await tail(daemon)
    await until(lambda: first in seqs(shipped(path)))
    await daemon.stop(drain=0)
    hub.post("#x", "alice", "while stopped")  # not seen by anyone: memory has no history
    daemon, _ = await start_daemon(body, hub=hub, state=tmp_path)
    hub.post("#x", "alice", "after")
    await until(lambda: any(p.text.endswith("> after") for p in hub.in_room("#y")))
    await settle(daemon)
    last = await tail(daemon)
    await until(lambda: seqs(shipped(path))[-1:] == [last], timeout=10)
    got = seqs(shipped(path))
    assert got == list(range(1, last + 1))  # nothing twice, nothing skipped


def test_syslog_messages_are_rfc5424_and_octet_counted() -> None:
    fields = {"seq": 7, "kind": "decision", "action": "deny", "rule": "r"}
    record = Shipped("decision", 7, "2024-05-01T12:00:00.5+00:00", "deny", json.dumps(fields))
    msg = formats.syslog_message(record, facility=13, app_name="imbridge", host="gw 1")
    header, _, body = msg.partition(b' [imbridge@32473 seq="7"] ')
    assert header.startswith(b"<109>1 2024-05-01T12:00:00.5Z gw1 imbridge ")
    assert header.endswith(b" decision")
    assert json.loads(body)["seq"] == 7
    framed = formats.octet_counted(msg)
    assert framed == str(len(msg)).encode() + b" " + msg
