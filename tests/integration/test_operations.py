"""The daemon's operational face over real sockets: HTTP health, readiness and metrics,
and systemd notifications."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.cli import main
from imbridge.config import parse_config
from imbridge.daemon import Daemon
from imbridge.sdnotify import Notifier
from imbridge.testing import write_secret
from tests.servers.process import free_port
from tests.unit.conftest import until

pytestmark = pytest.mark.integration


async def test_health_ready_and_metrics_endpoints(tmp_path: Path) -> None:
    port = free_port()
    secret = tmp_path / "metrics.token"
    write_secret(secret, "s3cret\n")
    config = parse_config(f"""
bridge:
  state_dir: {tmp_path}
  http: {{listen: "127.0.0.1:{port}", metrics_token_file: {secret}}}
networks:
  a: {{type: memory}}
  b: {{type: memory}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
""")
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    base = f"http://127.0.0.1:{port}"
    async with Daemon(config, factory=build) as daemon, aiohttp.ClientSession() as http:
        assert await daemon.ready(5)
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200
            assert body["ready"] is True
            assert set(body["networks"]) == {"a", "b"}

        hub.post("#x", "alice", "counted")
        await until(lambda: len(hub.in_room("#y")) == 1)
        await until(lambda: daemon.outbox is not None and daemon.outbox.depth() == 0)

        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer s3cret"}
        async with http.get(f"{base}/metrics", headers=headers) as resp:
            text = await resp.text()
            assert resp.status == 200
        assert 'imbridge_messages_in_total{network="a"} 1.0' in text
        assert 'imbridge_messages_out_total{network="b"} 1.0' in text
        assert 'imbridge_network_connected{network="a"} 1.0' in text
        assert 'imbridge_outbox_depth{network="b"} 0.0' in text
        assert 'imbridge_send_seconds_count{network="b"} 1.0' in text
        assert "s3cret" not in text

        b = daemon.adapters["b"]
        assert isinstance(b, MemoryAdapter)
        b.online = False
        async with http.get(f"{base}/readyz") as resp:
            body = await resp.json()
            assert resp.status == 503
            assert body["networks"]["b"]["connected"] is False
        await until(lambda: daemon.seen_connected.get("b") is False)
        b.online = True
        await until(lambda: daemon.reconnects.get("b") == 1, 5)


def test_notifier_speaks_the_sd_notify_protocol(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert notifier.watchdog_interval == 15.0
        assert notifier.ready("2/2 networks connected")
        assert server.recv(4096) == b"READY=1\nSTATUS=2/2 networks connected"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
        assert notifier.reloading()
        assert server.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert not Notifier({}).ready("x")  # not under systemd: a no-op


async def test_status_command_prints_each_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    path = tmp_path / "bridge.yaml"
    path.write_text(f"""
bridge: {{state_dir: {tmp_path}, http: {{listen: "127.0.0.1:{port}"}}}}
networks:
  a: {{type: memory}}
  b: {{type: memory, required: false}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
""")
    assert main(["status", "-c", str(path)]) == 1  # nothing listening yet
    assert "cannot reach" in capsys.readouterr().err
    async with Daemon(parse_config(path.read_text())) as daemon:
        assert await daemon.ready(5)
        code = await asyncio.to_thread(main, ["status", "-c", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "a                    connected     joined      outbox 0" in out
    assert "(optional)" in out
    assert "\nready\n" in out


def test_sighup_with_a_hostile_config_keeps_running_and_answers_ready(tmp_path: Path) -> None:
    """systemd waits for READY=1 after RELOADING=1: a reload that meets an alias bomb or a
    recursive alias must refuse the file, say so, and still answer READY."""
    sock_path = tmp_path / "notify.sock"
    path = tmp_path / "bridge.yaml"
    good = f"""
bridge: {{state_dir: {tmp_path / "state"}, log: {{level: info}}}}
networks: {{a: {{type: memory}}, b: {{type: memory}}}}
gateways: {{g: {{rooms: [{{network: a, room: "#x"}}, {{network: b, room: "#y"}}]}}}}
"""
    path.write_text(good)
    bomb = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(sock_path))
        server.settimeout(30)
        proc = subprocess.Popen(
            [sys.executable, "-m", "imbridge.cli", "run", "-c", str(path)],
            env={**os.environ, "NOTIFY_SOCKET": str(sock_path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def next_state() -> bytes:
                while True:
                    msg = server.recv(4096)
                    if msg.startswith((b"READY=1", b"RELOADING=1")):
                        return msg

            assert next_state().startswith(b"READY=1")
            for hostile in ("bridge: &a [*a]\n" + good, bomb + good):
                path.write_text(hostile)
                proc.send_signal(signal.SIGHUP)
                assert next_state().startswith(b"RELOADING=1")
                assert next_state().startswith(b"READY=1")
                assert proc.poll() is None
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.count("reload_refused") == 2, err
    assert "recursive alias" in err
    assert "values once aliases are expanded" in err
    assert "Traceback" not in err
