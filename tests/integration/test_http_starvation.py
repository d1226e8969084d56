"""The HTTP listener cannot be starved: a crowd of idle connections against a daemon with
few file descriptors (as under a unit's `LimitNOFILE=`) neither locks out a health check
nor floods the log, and a connection that never sends a request is closed."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.process import free_port

pytestmark = pytest.mark.integration

NOFILE = 64
IDLE = 80


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@contextlib.contextmanager
def daemon(tmp_path: Path, http: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
bridge:
  state_dir: {tmp_path / "state"}
  log: {{format: json}}
  http: {{listen: "127.0.0.1:{port}"{http}}}
networks:
  a: {{type: memory}}
""")
    stderr = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imbridge.cli", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        preexec_fn=_low_nofile,  # noqa: PLW1509 - no threads in this test process run here
    )
    try:
        asyncio.run(_healthy(port, 20.0))
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        stderr.close()


async def _healthy(port: int, timeout: float) -> None:
    """Waits until a fresh connection gets `200` from /healthz."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status = await reader.readline()
                if status.startswith(b"HTTP/1.1 200"):
                    return
            except OSError:
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.05)


def test_idle_connections_neither_lock_out_health_checks_nor_flood_the_log(
    tmp_path: Path,
) -> None:
    with daemon(tmp_path, "") as (port, _):
        idle: list[socket.socket] = []
        try:
            for _ in range(IDLE):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            # Far past the descriptors the daemon has, yet a new client is answered.
            asyncio.run(_healthy(port, 10.0))
            more = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
            idle += more
            asyncio.run(_healthy(port, 10.0))
        finally:
            for s in idle:
                s.close()
    lines = (tmp_path / "stderr.log").read_text(errors="replace").splitlines()
    accept = [line for line in lines if "accept" in line]
    assert len(accept) <= 3, f"{len(accept)} accept lines, first: {accept[:2]}"


def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    with (
        daemon(tmp_path, ", keepalive_seconds: 1") as (port, _),
        socket.create_connection(("127.0.0.1", port), timeout=30) as idle,
    ):
        # Read until the server hangs up: with aiohttp's default that took an hour.
        assert idle.recv(1) == b""
