"""Two sinks that keep up share their reads: the records are read and encoded once, not
once per sink (that work competes with the relay's for the interpreter), and each sink
still gets every record, in order."""

from __future__ import annotations

from pathlib import Path

from tests.unit.conftest import StartDaemon, settle, until
from tests.unit.test_sinks import seqs, shipped, tail

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
  sinks:
    - {{name: one, type: file, path: "{one}", batch: 7}}
    - {{name: two, type: file, path: "{two}", batch: 7}}
"""


async def test_two_sinks_at_one_cursor_read_each_batch_once(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    daemon, hub = await start_daemon(ROOMS.format(one=one, two=two))
    for i in range(40):
        hub.post("#x", "alice", f"message {i}")
    await until(lambda: len(hub.in_room("#y")) == 40)
    await settle(daemon)
    last = await tail(daemon)
    await until(lambda: seqs(shipped(one))[-1:] == [last] and seqs(shipped(two))[-1:] == [last])
    assert seqs(shipped(one)) == list(range(1, last + 1))
    assert seqs(shipped(two)) == list(range(1, last + 1))
    assert daemon.sinks is not None
    batches = sum(s.batches for s in daemon.sinks.states().values())
    assert daemon.sinks.reader.reads < batches
