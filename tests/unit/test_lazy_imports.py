"""What a daemon leaves unloaded when the config does not ask for it.

Idle memory is mostly imported code (bench/e2e.py prints where it goes): a daemon with
no HTTP listener, no policy hook, no record sink and a Matrix network in client mode
must not load the HTTP server, the metrics library, the hooks' and sinks' clients, nor
the pretty-printers `imbridge.slim` refuses. Checked in a fresh interpreter that does
what `imbridge run` does before it connects: the command's imports, the config, the
daemon and every network's adapter class.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.test_registry import LIGHT

NOT_WANTED = (
    "aiohttp.web",  # the listener's and the Matrix appservice's server side
    "prometheus_client",  # /metrics, served only by the listener
    "imbridge.endpoints",
    "imbridge.hooks.remote",  # HTTP policy hooks
    "imbridge.sinks.runner",  # record sinks
    "imbridge.sinks.transports",
    "imbridge.console.server",  # the review console: jinja2, argon2
    "jinja2",
    "argon2",
    "rich",
    "pygments",
    "psycopg",  # the PostgreSQL engine, only with bridge.database
    "psycopg_pool",
    "imbridge.engines.postgres",
)

PROBE = """
import sys
import imbridge.cli
from imbridge import registry
from imbridge.config.load import load_config
from imbridge.daemon import Daemon

config = load_config(__import__("pathlib").Path(sys.argv[1]))
for net in config.networks.values():
    registry.adapter_class(net.type)
Daemon(config)
print("loaded:", *sorted(m for m in sys.argv[2:] if sys.modules.get(m) is not None))
"""


def test_a_daemon_without_listener_hooks_or_sinks_loads_none_of_their_code(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(LIGHT.replace("./state", str(tmp_path / "state")))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), *NOT_WANTED],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "loaded:"
