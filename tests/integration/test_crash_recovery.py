"""The daemon as a real process, killed with SIGKILL mid-stream and restarted on the same
state: every message is delivered exactly once, in order.

Memory adapters stand in for the networks, reading from a feed file (with their resume
point in the state database) and appending every accepted send to a delivery file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

COUNT = 1500


def delivered(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    # A kill can cut the last line short; a whole line is what the "server" accepted.
    return [json.loads(line)["text"] for line in lines if line.endswith("}")]


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "imbridge.cli", "run", "-c", str(config)],
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )


def test_sigkill_mid_stream_then_restart_delivers_every_message_once(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("".join(f"message {i}\n" for i in range(COUNT)), encoding="utf-8")
    out = tmp_path / "delivered.jsonl"
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
bridge: {{state_dir: {tmp_path / "state"}, log: {{level: info, format: json}}}}
networks:
  src: {{type: memory, feed_file: {feed}, feed_room: "#feed"}}
  dst: {{type: memory, delivery_file: {out}, backlog: null}}  # one burst, all must arrive
gateways:
  g:
    nick_format: ""
    rooms:
      - {{network: src, room: "#feed"}}
      - {{network: dst, room: "#out"}}
""")
    log = tmp_path / "daemon.log"
    rng = random.Random(4)
    kills = 0
    deadline = time.monotonic() + 120
    proc = start(config, log)
    try:
        for kill_at in sorted(rng.sample(range(100, COUNT - 100), 3)):
            while len(delivered(out)) < kill_at and proc.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.002)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = start(config, log)
        while len(delivered(out)) < COUNT:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"{len(delivered(out))} of {COUNT} arrived"
            time.sleep(0.05)
        # A clean stop drains the outbox: anything it would send twice is sent before
        # it exits, so the file read below holds it.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert kills == 3
    assert delivered(out) == [f"message {i}" for i in range(COUNT)]


def test_sigterm_drains_and_exits_zero_quickly(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
bridge: {{state_dir: {tmp_path / "state"}}}
networks:
  a: {{type: memory}}
  b: {{type: memory}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
""")
    proc = start(config, tmp_path / "daemon.log")
    log = tmp_path / "daemon.log"
    deadline = time.monotonic() + 30
    while b'"joined"' not in log.read_bytes() or log.read_bytes().count(b'"joined"') < 2:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert b'"stopped"' in log.read_bytes()
