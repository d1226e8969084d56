"""Where the daemon's memory goes, for the end-to-end benchmark's report: resident size
each imported package adds, and a daemon run under tracemalloc that dumps its heap by
package on SIGUSR1 (idle, then what grew during a burst)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

IMPORT_PROBE = """
import importlib.machinery as m, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
# Resident size each module adds while it executes, minus what the modules it imports
# add: attributed to its top-level package (stdlib together, imbridge by module).
stack, cost = [0.0], {}
LOADERS = (m.SourceFileLoader, m.SourcelessFileLoader, m.ExtensionFileLoader)
class Meter:
    @classmethod
    def find_spec(cls, name, path, target=None):
        for finder in sys.meta_path:
            if finder is not cls and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        else:
            return None
        if isinstance(spec.loader, LOADERS):
            run = spec.loader.exec_module
            def exec_module(module, run=run, name=name):
                before = rss()
                stack.append(0.0)
                try:
                    run(module)
                finally:
                    total, inner = rss() - before, stack.pop()
                    top = name.partition(".")[0]
                    top = "(stdlib)" if top in sys.stdlib_module_names else top
                    cost[top] = cost.get(top, 0.0) + total - inner
                    stack[-1] += total
            spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Meter)
base = rss()
import imbridge.cli, imbridge.daemon
import imbridge.adapters.irc.adapter, imbridge.adapters.xmpp.adapter
import imbridge.adapters.matrix.adapter
rows = sorted(cost.items(), key=lambda kv: -kv[1])
print(json.dumps({"python": base, "total": rss(), "rows": rows}))
"""

TRACED_DAEMON = """
import runpy, signal, sys, tracemalloc
from collections import Counter
from pathlib import Path
out, first = Path(sys.argv[2]), []
def package(name):
    if "site-packages/" in name:
        return name.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if "/imbridge/" in name:
        return "imbridge"
    if name.startswith("<frozen importlib"):
        return "(modules' code: import machinery)"
    return "(stdlib) " + name.rsplit("/", 1)[-1]
def dump(_sig, _frame):
    snap = tracemalloc.take_snapshot()
    cur, peak = tracemalloc.get_traced_memory()
    sizes = Counter()
    if not first:  # idle: what the heap holds, by package
        first.append(snap)
        for stat in snap.statistics("filename"):
            sizes[package(stat.traceback[0].filename)] += stat.size
        head = f"idle: python heap {cur / 2**20:.1f} MiB"
    else:  # after the burst: what grew since idle
        for stat in snap.compare_to(first[0], "filename"):
            sizes[package(stat.traceback[0].filename)] += stat.size_diff
        head = f"after the burst: python heap {cur / 2**20:.1f} MiB (peak {peak / 2**20:.1f})"
        head += ", growth since idle by package:"
    lines = [head] + [f"{v / 2**20:7.2f} MiB  {k}" for k, v in sizes.most_common(8)]
    out.with_suffix(".1" if snap is first[0] else ".2").write_text(
        "\\n".join(lines))
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["imbridge", "run", "-c", sys.argv[1]]
runpy.run_module("imbridge.cli", run_name="__main__")
"""


def import_costs() -> dict[str, Any]:
    """Resident size of the imports alone, attributed to packages."""
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


# The floor: what the libraries alone take, imported in layers in a fresh interpreter
# (refusing what `imbridge.slim` refuses), before any imbridge module but that one.
FLOOR_LAYERS = (
    ("asyncio, ssl and importlib.metadata (imbridge's version; irc and nio load it too)",
     ("asyncio", "ssl", "importlib.metadata")),
    ("the three protocol libraries (irc, slixmpp, matrix-nio)",
     ("irc.client_aio", "slixmpp", "nio")),
    ("the core's own choices (pydantic, PyYAML, structlog, sqlite3, nh3, re2, argparse)",
     ("pydantic.main", "pydantic.types", "yaml", "structlog", "sqlite3", "nh3", "re2",
      "argparse")),
    ("cryptography's Ed25519, for signed archive heads",
     ("cryptography.hazmat.primitives.asymmetric.ed25519",
      "cryptography.hazmat.primitives.serialization")),
)  # fmt: skip

FLOOR_PROBE = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
rows = [("bare python", rss())]
import imbridge.slim  # refuses what the daemon refuses; imports importlib.metadata
for label, modules in json.loads(sys.argv[1]):
    for module in modules:
        importlib.import_module(module)
    rows.append((label, rss()))
print(json.dumps(rows))
"""


def floor_costs() -> list[tuple[str, float]]:
    """(layer, resident MiB once it is imported) for each of `FLOOR_LAYERS`, cumulative."""
    out = subprocess.run([sys.executable, "-c", FLOOR_PROBE, json.dumps(FLOOR_LAYERS)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout  # fmt: skip
    return [(label, mib) for label, mib in json.loads(out)]
