"""What an operator sees on a terminal: only imbridge's own words, each said once.

`imbridge run` with an XMPP network on a real Prosody: every line on standard error is
one of imbridge's JSON log objects (slixmpp's import-time stringprep advice used to come
first), and each connect and each join is logged once, not by the adapter and again by
the daemon. Commands that need no XMPP network never import slixmpp at all.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imbridge.testing import xmpp_network
from tests.servers.prosody import Prosody

pytestmark = pytest.mark.integration


def _run_until(config: Path, log: Path, done: str, count: int) -> list[dict[str, Any]]:
    """Runs the daemon until `done` has been logged `count` times, then stops it with
    SIGTERM; returns every line of its standard error, parsed (failing on any that is
    not one of imbridge's JSON objects)."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imbridge.cli", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count(f'"event": "{done}"') < count:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log.read_text().splitlines()
    assert lines
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not imbridge's words on stderr: {line!r}")
    return parsed


def test_run_with_xmpp_prints_only_imbridge_lines_and_logs_each_join_once(
    tmp_path: Path, prosody: Prosody
) -> None:
    jid, password = prosody.register()
    rooms = [prosody.room("a"), prosody.room("b")]
    config = tmp_path / "bridge.yaml"
    config.write_text(
        json.dumps(
            {
                "bridge": {
                    "state_dir": str(tmp_path / "state"),
                    "log": {"level": "info", "format": "json"},
                },
                "networks": {"xm": xmpp_network(prosody, jid, password)},
                "gateways": {"g": {"rooms": [{"network": "xm", "room": r} for r in rooms]}},
                "archive": {"enabled": False},
            }
        )
    )
    logged = _run_until(config, tmp_path / "stderr.log", "joined", 2)
    assert not [e for e in logged if "stringprep" in json.dumps(e)]
    connected = [e for e in logged if e["event"] == "connected"]
    assert len(connected) == 1, connected
    joined = sorted(str(e.get("room")) for e in logged if e["event"] == "joined")
    assert joined == sorted(rooms)


def test_commands_without_an_xmpp_network_never_import_slixmpp(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        json.dumps(
            {
                "bridge": {"state_dir": str(tmp_path / "state")},
                "networks": {
                    "a": {"type": "memory"},
                    "b": {"type": "irc", "host": "localhost", "tls": False, "nick": "relay"},
                },
                "gateways": {
                    "g": {"rooms": [{"network": "a", "room": "#x"}, {"network": "b", "room": "#y"}]}
                },
            }
        )
    )
    script = (
        "import sys\n"
        "from imbridge.cli import main\n"
        f"assert main(['check', '-c', {str(config)!r}]) == 0\n"
        f"assert main(['policy', 'explain', '-c', {str(config)!r}]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'slixmpp')\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "stringprep" not in proc.stderr
