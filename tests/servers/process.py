"""What every test server's process has in common: it runs in a session of its own with
its output appended to a log file, is waited for until it answers (a start that exits or
never answers fails with the end of its logs, so CI shows why), and stops with SIGTERM,
then SIGKILL if it does not go within 10 s.

The fixtures in `ircd`, `prosody` and `synapse` (and `scripts/quickstart`) build on it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, for a server or a bridge's listener."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    """A test server that would not start: a failure, never a reason to skip."""


class ServerProcess:
    """Mixed into each server fixture, which provides `state`, `proc` and `log_names`."""

    log_names: ClassVar[tuple[str, ...]]
    """Log files in `state`, the first one receiving the process's stdout and stderr."""
    state: Path
    proc: subprocess.Popen[bytes] | None

    @property
    def label(self) -> str:
        return type(self).__name__.lower()

    def spawn(self, argv: Sequence[str], *, cwd: Path | None = None) -> None:
        with (self.state / self.log_names[0]).open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd, start_new_session=True,
            )  # fmt: skip

    def await_ready(
        self, ready: Callable[[], object], timeout: float, *, poll: float = 0.05
    ) -> None:
        """Returns once `ready()` holds; raises `ServerError` if the process exits first or
        `timeout` seconds pass (stopping it then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                raise ServerError(f"{self.label} exited ({code}):\n{self.log_tail()}")
            if ready():
                return
            time.sleep(poll)
        self.stop()
        raise ServerError(f"{self.label} did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        """Stops and starts again on the same ports, accounts and rooms."""
        self.stop()
        self.start()

    def start(self) -> None:
        raise NotImplementedError

    def log_tail(self, lines: int = 30) -> str:
        out: list[str] = []
        for name in self.log_names:
            path = self.state / name
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)
