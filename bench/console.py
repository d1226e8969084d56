"""Review console search latency through HTTP.

    .venv/bin/python bench/console.py [--records 1000000] [--queries 100]

An archive of `--records` records is generated as `bench/archive.py` generates it (its
`generate`: chained, indexed, signed heads), the console is served on loopback exactly as
`imbridge console` serves it, a reviewer signs in through the login form, and
`GET /console/search?q=...` pages are timed end to end (request, the FTS search, the
`access` record and its checkpoint, the rendered page) for a rare word, a common word,
two words, and a word within one room, interleaved. Baseline, measured in the same run:
the archive's own `search` for the same queries, called in process (what
`imbridge archive search` does before printing). Targets (issue 16): p50 < 300 ms,
p99 < 1 s at 1 000 000 records.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder is sys.path[0]: the repository root must come first.
sys.path.remove(sys.path[0])
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from argon2 import PasswordHasher

from bench.archive import COMMON, RARE, generate
from imbridge.archive.search import Query, search
from imbridge.config import parse_config
from imbridge.console.server import mounted
from imbridge.console.users import Role, UserStore
from tests.servers.process import free_port

QUERIES = {
    "rare word": {"q": RARE},
    "common word": {"q": COMMON},
    "two words": {"q": f"{COMMON} w2"},
    "word in a room": {"q": COMMON, "room": "#room7"},
}
PASSWORD = "bench password 123"


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def mark_migrated(path: Path) -> None:
    """`generate` runs the archive's migrations by hand: say so, as the daemon would."""
    from imbridge.archive.store import ARCHIVE_MIGRATIONS  # noqa: PLC0415

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    conn.execute(
        "INSERT OR REPLACE INTO schema_version VALUES ('archive', ?)", (len(ARCHIVE_MIGRATIONS),)
    )
    conn.close()


def baseline(state: Path, queries: int) -> dict[str, list[float]]:
    from imbridge.archive.store import ArchiveStore  # noqa: PLC0415
    from imbridge.config.schema import Archive  # noqa: PLC0415

    store = ArchiveStore(Archive(log_checkpoints=False), state_dir=state)
    conn = sqlite3.connect(state / "imbridge.db")
    out: dict[str, list[float]] = {name: [] for name in QUERIES}
    for _ in range(queries):
        for name, params in QUERIES.items():
            q = Query(text=params["q"], room=params.get("room"), limit=51)
            start = time.perf_counter()
            search(conn, store, q)
            out[name].append(time.perf_counter() - start)
    conn.close()
    return out


async def through_http(state: Path, queries: int) -> dict[str, list[float]]:
    port = free_port()
    config = parse_config(
        f"bridge: {{state_dir: '{state}', log: {{level: warning}}}}\n"
        "networks: {a: {type: memory}}\n"
        "archive: {log_checkpoints: false}\nconsole: {enabled: true}\n"
    )
    UserStore(state, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)).add(
        "bench", Role.REVIEWER, PASSWORD
    )
    root = web.Application()
    out: dict[str, list[float]] = {name: [] for name in QUERIES}
    async with mounted(root, config, f"127.0.0.1:{port}"):
        runner = web.AppRunner(root, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}/console"
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                form = await (await http.get(f"{base}/login")).text()
                found = re.search(r'name="csrf" value="([^"]+)"', form)
                assert found is not None
                resp = await http.post(
                    f"{base}/login",
                    data={"username": "bench", "password": PASSWORD, "csrf": found.group(1)},
                )
                assert resp.url.path.endswith("/overview"), resp.url
                for params in QUERIES.values():  # warm the page cache once
                    await (await http.get(f"{base}/search", params=params)).read()
                for _ in range(queries):
                    for name, params in QUERIES.items():
                        start = time.perf_counter()
                        resp = await http.get(f"{base}/search", params=params)
                        page = await resp.read()
                        out[name].append(time.perf_counter() - start)
                        assert resp.status == 200
                        assert b'<table class="hits">' in page
        finally:
            await runner.cleanup()
    return out


def report(title: str, http: dict[str, list[float]], base: dict[str, list[float]]) -> None:
    print(title)
    every: list[float] = []
    for name in QUERIES:
        h, b = http[name], base[name]
        every += h
        print(
            f"  {name:<15} p50 {statistics.median(h) * 1e3:7.1f} ms  p99 {pct(h, 99) * 1e3:7.1f} ms"
            f"   in-process search p50 {statistics.median(b) * 1e3:6.1f} ms"
            f"   ratio {statistics.median(h) / statistics.median(b):5.1f}"
        )
    print(
        f"  all queries     p50 {statistics.median(every) * 1e3:7.1f} ms  "
        f"p99 {pct(every, 99) * 1e3:7.1f} ms   (targets: p50 < 300 ms, p99 < 1000 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imbridge-bench-console-") as tmp:
        state = Path(tmp)
        start = time.perf_counter()
        generate(state / "imbridge.db", args.records)
        mark_migrated(state / "imbridge.db")
        print(f"generated {args.records} records in {time.perf_counter() - start:.0f} s")
        base = baseline(state, args.queries)
        http = asyncio.run(through_http(state, args.queries))
        report(f"console search page, {args.records} records, {args.queries} of each:", http, base)


if __name__ == "__main__":
    main()
