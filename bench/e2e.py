"""imbridge end to end, as a user runs it: one gateway over IRC, XMPP and Matrix.

    .venv/bin/python bench/e2e.py [--latency 150] [--burst 5000] [--matrix-burst 200]
                                  [--full-matrix] [--memory-report]
                                  [--soak-seconds 600] [--soak-rate 340] [--soak-only]

Starts ngircd, Prosody and Synapse on loopback (relaxed flood limits, the test fixtures'
classes), a sender and an independent observer on each network, and `imbridge run` as a
subprocess with one gateway: an IRC channel, an XMPP MUC and a Matrix room. Every figure
is printed with its ratio to the direct client path measured in the same run:

* start to first relayed message: the process is spawned while the IRC sender posts a
  probe every 50 ms; baseline: a fresh client process that connects to IRC and posts.
* latency at 5 msg/s, origins taking turns: each message is seen by the observer of its
  own network (direct path) and, relayed, by the other two (bridged); per destination,
  messages posted there against messages relayed there, and message by message what the
  bridge added over the message's own direct arrival.
* in-order throughput per destination: a burst of `--burst` messages, half from IRC,
  half from XMPP, sent at once; the direct path is each sender's own half as its
  network's observer receives it. Synapse takes one client's messages at about 10-40/s
  here, so 5 000 would keep Matrix busy for minutes: a policy rule keeps the burst out of
  the Matrix room (denied and archived, as any denial) unless `--full-matrix`, and Matrix
  throughput is measured on its own burst of `--matrix-burst` from IRC, against one
  client posting the same number directly into a room of its own.
* memory of the imbridge process (VmRSS, VmHWM from /proc): idle once all networks relay,
  and the peak over the whole run, burst included. Zero loss, order and duplicates are
  checked for every message of every phase.
* soak (last; `--soak-seconds 0` skips it, `--soak-seconds 20` is a smoke run): a steady
  `--soak-rate` msg/s over all three networks for `--soak-seconds` (204 000 messages by
  default), RSS sampled every 5 s; the figure is the growth after warm-up (bench/e2e_soak.py;
  target, issue 21: <= 5 MiB). `--soak-only` skips the latency and burst phases.

Targets (issue 9): start to first relay < 2 s, RSS <= 60 MiB idle and <= 80 MiB after the
burst, zero loss; issue 21 restates idle as <= 70 MiB with all three networks. When memory
is over target (or with `--memory-report`) it says where it goes: resident size each
imported package adds, the floor (the libraries alone, imported in layers: Python and
asyncio, the three protocol libraries, the core's own choices, cryptography), and the
Python heap of a second daemon under tracemalloc, by package, idle and what grew during a
burst. Takes about 2 minutes, plus the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this file's folder is sys.path[0] and `bench/irc.py` would shadow the
# `irc` library: the project root takes its place.
sys.path.remove(sys.path[0])
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e_memory import TRACED_DAEMON, floor_costs, import_costs  # noqa: E402
from bench.e2e_soak import Soak, soak, soak_lines  # noqa: E402
from bench.e2e_world import (  # noqa: E402
    NETS,
    World,
    pct,
    populate,
    rss,
    start_servers,
    wait_until,
)

TARGET_START_S = 2.0
TARGET_IDLE_MIB = 60
TARGET_PEAK_MIB = 80
TARGET_SOAK_GROWTH_MIB = 5

# The direct cold path: a client process that does only what imbridge's first relay also
# needs on IRC (start, connect, register, join, post), with the standard library alone.
COLD_CLIENT = """
import socket, sys
host, port, chan, nick = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port))
s.sendall(f"NICK {nick}\\r\\nUSER cold 0 * :cold\\r\\n".encode())
buf = b""
while f" 001 {nick} ".encode() not in buf:
    buf += s.recv(4096)
s.sendall(f"JOIN {chan}\\r\\nPRIVMSG {chan} :cold kC0\\r\\nQUIT :done\\r\\n".encode())
while s.recv(4096):
    pass
"""


# --- phases -----------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    disorder: int = 0

    def add(self, text: str = "") -> None:
        self.lines.append(text)
        print(text, flush=True)


async def cold_direct(world: World) -> float:
    """Seconds from spawning a minimal IRC client process to its line reaching the
    observer: the direct path's cold start."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", COLD_CLIENT, world.ircd.host, str(world.ircd.port),
        world.chan, "cold" + secrets.token_hex(2),
    )  # fmt: skip
    await wait_until(lambda: ("irc", "kC0") in world.arrivals.first, 30, "cold client line")
    await proc.wait()
    return world.arrivals.first[("irc", "kC0")] - start


async def matrix_direct(world: World, n: int) -> float:
    """Messages per second one client gets into a Matrix room in order (awaiting each
    send, as the relay does), timed at the observer: in a room the relay is not in."""
    side = world.mobs.side
    keys = [f"kD{i}" for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        await world.matrix_say(f"direct {key}", world.side_room)
    await wait_until(lambda: all(k in side for k in keys), 120, "Matrix direct")
    return n / (max(side[k] for k in keys) - start)


def service_environment() -> dict[str, str]:
    """The `Environment=` lines of systemd/imbridge.service: the daemon is measured as the
    service runs it."""
    unit = Path(__file__).resolve().parent.parent / "systemd" / "imbridge.service"
    env = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return env


@contextlib.asynccontextmanager
async def imbridge(world: World) -> AsyncIterator[tuple[asyncio.subprocess.Process, float]]:
    """`imbridge run -c FILE`, as a user starts it; yields the process and its spawn time."""
    path = world.tmp / "bridge.yaml"
    path.write_text(json.dumps(world.config, indent=1))  # JSON is YAML
    log = (world.tmp / "imbridge.log").open("wb")
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imbridge.cli", "run", "-c", str(path),
        stdout=log, stderr=log, cwd=world.tmp, env={**os.environ, **service_environment()},
    )  # fmt: skip
    try:
        yield proc, start
    finally:
        await terminate(proc)
        log.close()


async def terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, and SIGKILL if the daemon has not drained and exited within 20 s."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def first_relay(world: World, proc: asyncio.subprocess.Process,
                      start: float) -> tuple[float, float]:  # fmt: skip
    """Probes from IRC every 50 ms until one comes out on XMPP and on Matrix: seconds
    from spawn to the first relayed message, and to both networks relaying."""
    a = world.arrivals
    sent = 0

    def out(net: str) -> float | None:
        times = [t for (n, k), t in a.first.items() if n == net and k.startswith("kP")]
        return min(times) if times else None

    deadline = start + 60
    while out("xm") is None or out("mx") is None:
        if proc.returncode is not None or time.perf_counter() > deadline:
            tail = (world.tmp / "imbridge.log").read_text()[-2000:]
            raise SystemExit(f"imbridge relayed nothing (exit {proc.returncode}):\n{tail}")
        world.irc_say(f"probe kP{sent}")
        sent += 1
        await asyncio.sleep(0.05)
    first = min(t for t in (out("xm"), out("mx")) if t is not None)
    both = max(t for t in (out("xm"), out("mx")) if t is not None)
    return first - start, both - start


@dataclass(frozen=True)
class Trip:
    """One latency message: where it was sent, and ms from sending to each observer."""

    origin: str
    ms: dict[str, float]

    def direct(self) -> float:
        return self.ms[self.origin]


async def latency(world: World, n: int) -> list[Trip]:
    """`n` messages at 5 msg/s, origins taking turns; each one is seen on its own
    network (the direct path) and, relayed, on the other two."""
    a = world.arrivals
    sent: dict[str, tuple[str, float]] = {}
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / 5 - time.perf_counter()))
        origin, key = NETS[i % 3], f"kL{i}"
        sent[key] = (origin, time.perf_counter())
        await world.say(origin, f"ping {key}")
    await wait_until(lambda: all(a.has(net, sent) for net in NETS), 60, "latency messages")
    return [
        Trip(origin, {net: (a.first[(net, key)] - t) * 1000 for net in NETS})
        for key, (origin, t) in sent.items()
    ]


def latency_table(trips: list[Trip]) -> list[str]:
    """Per destination network: the direct path (messages posted there) against the
    bridged one (messages relayed there), and what the bridge added to each relayed
    message over its own direct arrival."""
    head = f"  {'':12}{'direct p50/p99':>18}{'bridged p50/p99':>19}{'ratio p50/p99':>17}"
    lines = [head + f"{'added p50/p99':>18}"]
    labels = ("into IRC", "into XMPP", "into Matrix", "overall")
    for net, label in zip((*NETS, "all"), labels, strict=True):
        direct = [t.direct() for t in trips if net in (t.origin, "all")]
        relayed = [t for t in trips if t.origin != net]
        bridged = [t.ms[d] for t in relayed for d in NETS if d != t.origin and net in (d, "all")]
        added = [t.ms[d] - t.direct() for t in relayed for d in NETS
                 if d != t.origin and net in (d, "all")]  # fmt: skip
        d50, d99, b50, b99 = (pct(direct, 50), pct(direct, 99),
                              pct(bridged, 50), pct(bridged, 99))  # fmt: skip
        lines.append(f"  {label:12}{d50:9.1f}{d99:8.1f} ms{b50:9.1f}{b99:8.1f} ms"
                     f"{b50 / d50:9.2f}x{b99 / d99:6.2f}x"
                     f"{pct(added, 50):9.1f}{pct(added, 99):7.1f} ms")  # fmt: skip
    return lines


async def burst(world: World, n: int, full_matrix: bool,
                report: Report) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Half of `n` from IRC, half from XMPP, at once. Returns per destination network
    (direct rate, bridged rate) in msg/s; checks order, loss and duplicates."""
    a = world.arrivals
    from_irc = [f"kBi{i}" for i in range(n // 2)]
    from_xm = [f"kBx{i}" for i in range(n - n // 2)]
    start = time.perf_counter()
    for key in from_irc:
        world.irc_say(f"burst {key}")
    for key in from_xm:
        world.xmpp_say(f"burst {key}")
    want = {"irc": from_irc + from_xm, "xm": from_irc + from_xm}
    if full_matrix:
        want["mx"] = from_irc + from_xm
    await wait_until(lambda: all(a.has(net, keys) for net, keys in want.items()), 900,
                     f"a burst of {n}")  # fmt: skip
    for net in want:
        for part in (from_irc, from_xm):
            if not a.in_order(net, part):
                report.disorder += 1
                report.add(f"!! {net}: {part[0][:3]}* out of order")
    rates = {
        "irc": (len(from_irc) / (a.last("irc", from_irc) - start),
                len(from_xm) / (a.last("irc", from_xm) - start)),
        "xm": (len(from_xm) / (a.last("xm", from_xm) - start),
               len(from_irc) / (a.last("xm", from_irc) - start)),
    }  # fmt: skip
    if "mx" in want:
        rates["mx"] = (0.0, n / (a.last("mx", want["mx"]) - start))
    return rates


async def matrix_burst(world: World, n: int) -> float:
    """`n` lines from IRC at once, timed as they come out in the Matrix room."""
    a = world.arrivals
    keys = [f"kM{i}" for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        world.irc_say(f"mburst {key}")
    await wait_until(lambda: a.has("mx", keys) and a.has("xm", keys), 600, "Matrix burst")
    return n / (a.last("mx", keys) - start)


# --- where the memory goes --------------------------------------------------------------


async def traced(world: World, n: int) -> str:
    """A second daemon under tracemalloc on the same rooms (the first one stopped, state
    of its own): its Python heap by package when idle, and what grew during a burst of
    `n` lines from IRC."""
    config = json.loads(json.dumps(world.config))
    config["bridge"]["state_dir"] = str(world.tmp / "state-traced")
    # tracemalloc slows the daemon several times over: past the default backlog it would
    # shed most of the burst (as it should) and the wait for it would never end.
    config["networks"]["xm"]["backlog"] = {"max_items": 1_000_000, "max_bytes": 1 << 30}
    path, out = world.tmp / "traced.yaml", world.tmp / "traced.txt"
    path.write_text(json.dumps(config))
    log = (world.tmp / "traced.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "tracemalloc=1", "-c", TRACED_DAEMON, str(path), str(out),
        stdout=log, stderr=log, cwd=world.tmp,
    )  # fmt: skip
    a, keys = world.arrivals, [f"kT{i}" for i in range(n)]
    try:
        probe, deadline = 0, time.perf_counter() + 60
        while not any(k.startswith("kQ") for k in a.order["xm"]):
            if time.perf_counter() > deadline or proc.returncode is not None:
                return "the traced daemon never relayed"
            world.irc_say(f"tprobe kQ{probe}")
            probe += 1
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        proc.send_signal(signal.SIGUSR1)
        await wait_until(out.with_suffix(".1").exists, 60, "tracemalloc snapshot")
        for key in keys:
            world.irc_say(f"burst {key}")
        await wait_until(lambda: a.has("xm", keys), 300, "traced burst")
        await asyncio.sleep(1)
        proc.send_signal(signal.SIGUSR1)
        await wait_until(out.with_suffix(".2").exists, 60, "tracemalloc comparison")
        await asyncio.sleep(0.2)
        return out.with_suffix(".1").read_text() + "\n" + out.with_suffix(".2").read_text()
    finally:
        await terminate(proc)
        log.close()


# --- the run ----------------------------------------------------------------------------


@dataclass
class Figures:
    cold: float = 0.0
    first: float = 0.0
    both: float = 0.0
    idle: float = 0.0
    idle_hwm: float = 0.0
    after: float = 0.0
    hwm: float = 0.0
    trips: list[Trip] = field(default_factory=list)
    rates: dict[str, tuple[float, float]] = field(default_factory=dict)
    mx_direct: float = 0.0
    mx_bridged: float = 0.0
    duplicates: int = 0
    checked: int = 0
    traced_heap: str = ""
    soak: Soak | None = None


async def measure(world: World, args: argparse.Namespace, report: Report) -> Figures:
    f, a = Figures(), world.arrivals
    f.cold = await cold_direct(world)
    if not args.soak_only:
        f.mx_direct = await matrix_direct(world, args.matrix_burst)
    async with imbridge(world) as (proc, spawned):
        f.first, f.both = await first_relay(world, proc, spawned)
        await asyncio.sleep(3)  # settled, no traffic
        f.idle, f.idle_hwm = rss(proc.pid)
        if not args.soak_only:
            f.trips = await latency(world, args.latency)
            f.rates = await burst(world, args.burst, args.full_matrix, report)
            f.mx_bridged = await matrix_burst(world, args.matrix_burst)
        await asyncio.sleep(1)
        f.after, f.hwm = rss(proc.pid)
        if args.soak_seconds > 0:
            f.soak = await soak(world, proc.pid, args.soak_seconds, args.soak_rate)
            _, f.hwm = rss(proc.pid)
    f.duplicates, f.checked = a.duplicates, len({k for (_, k) in a.first})
    over = f.idle > TARGET_IDLE_MIB or f.hwm > TARGET_PEAK_MIB
    if (over and not args.soak_only) or args.memory_report:
        f.traced_heap = await traced(world, min(args.burst, 2000))
    return f


def mark(ok: bool) -> str:
    return "ok" if ok else "OVER TARGET"


def show(f: Figures, args: argparse.Namespace, report: Report) -> None:
    r = report.add
    r("")
    r(f"imbridge end to end: one gateway over ngircd, Prosody and Synapse on loopback "
      f"({os.cpu_count()} CPUs)")  # fmt: skip
    r(f"start to first relayed message  {f.first:6.2f} s  (all networks relaying {f.both:.2f}"
      f" s); direct cold client {f.cold:.2f} s, ratio {f.first / f.cold:4.1f}x;"
      f" target < {TARGET_START_S:.0f} s: {mark(f.first < TARGET_START_S)}")  # fmt: skip
    if not args.soak_only:
        show_traffic(f, args, report)
    r(f"loss: 0 (a run waits for every message)  out of order: {report.disorder}  "
      f"duplicates: {f.duplicates}  ({f.checked} distinct messages, on every network)")  # fmt: skip
    r(f"memory of imbridge: idle {f.idle:5.1f} MiB (target <= {TARGET_IDLE_MIB}: "
      f"{mark(f.idle <= TARGET_IDLE_MIB)}), peak {f.hwm:5.1f} MiB over the run (target <= "
      f"{TARGET_PEAK_MIB}: {mark(f.hwm <= TARGET_PEAK_MIB)}), {f.after:5.1f} MiB after the "
      f"bursts; startup peak {f.idle_hwm:.1f} MiB")  # fmt: skip
    if f.soak is not None:
        for line in soak_lines(f.soak, TARGET_SOAK_GROWTH_MIB):
            r(line)
    if f.traced_heap:
        show_heap(f, report)


def show_traffic(f: Figures, args: argparse.Namespace, report: Report) -> None:
    r = report.add
    r(f"latency at 5 msg/s, {args.latency} messages, origins taking turns (ms from sending "
      f"to the observer on each network)")  # fmt: skip
    for line in latency_table(f.trips):
        r(line)
    r(f"in-order throughput, burst of {args.burst} (half from IRC, half from XMPP at once)")
    for net, label in (("irc", "into IRC "), ("xm", "into XMPP")):
        d, b = f.rates[net]
        r(f"  {label}  direct {d:8.0f} msg/s  bridged {b:8.0f} msg/s  ratio {b / d:5.2f}x")
    r(f"  (the daemon relayed {f.rates['irc'][1] + f.rates['xm'][1]:.0f} msg/s both ways "
      f"together, each one archived with its decisions)")  # fmt: skip
    if "mx" in f.rates:
        r(f"  into Matrix bridged {f.rates['mx'][1]:.1f} msg/s (all {args.burst})")
    else:
        r(f"  (kept off Matrix by policy: {args.burst} denials archived; --full-matrix "
          f"sends them there too)")  # fmt: skip
    ratio = f.mx_bridged / f.mx_direct
    r(f"  into Matrix (burst of {args.matrix_burst} from IRC)  direct {f.mx_direct:6.1f} "
      f"msg/s  bridged {f.mx_bridged:6.1f} msg/s  ratio {ratio:5.2f}x")  # fmt: skip


def show_heap(f: Figures, report: Report) -> None:
    r = report.add
    costs = import_costs()
    r(f"where it goes: bare python {costs['python']:.1f} MiB; with imbridge and its "
      f"adapters imported, before any connection: {costs['total']:.1f} MiB. Resident "
      f"size each package adds as it is imported (its own modules, not what they "
      f"import):")  # fmt: skip
    rows = costs["rows"]
    for name, mib in rows[:12]:
        r(f"  {mib:6.1f} MiB  {name}")
    r(f"  {sum(mib for _, mib in rows[12:]):6.1f} MiB  {len(rows) - 12} others")
    r(
        "the floor: resident size of the libraries alone, imported in layers (cumulative),"
        " before any imbridge module:"
    )
    for label, mib in floor_costs():
        r(f"  {mib:6.1f} MiB  {label}")
    r("python heap of a second daemon under tracemalloc (by package of allocation):")
    r(textwrap.indent(f.traced_heap, "  "))


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="imbridge-e2e-") as name:
        tmp = Path(name)
        ircd, prosody, synapse = await asyncio.to_thread(start_servers, tmp)
        try:
            world = await populate(tmp, ircd, prosody, synapse, args.full_matrix)
            sync = asyncio.create_task(world.mobs.run(world.side_room))
            report = Report()
            try:
                figures = await measure(world, args, report)
            finally:
                sync.cancel()
                await asyncio.gather(sync, return_exceptions=True)
                await world.close()
            show(figures, args, report)
        finally:
            synapse.stop()
            prosody.stop()
            ircd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=int, default=150, help="messages at 5 msg/s")
    parser.add_argument("--burst", type=int, default=5000, help="messages in the burst")
    parser.add_argument("--matrix-burst", type=int, default=200,
                        help="messages in the Matrix throughput burst")  # fmt: skip
    parser.add_argument("--full-matrix", action="store_true",
                        help="send the whole burst into the Matrix room too (slow)")  # fmt: skip
    parser.add_argument("--memory-report", action="store_true",
                        help="say where the memory goes even when within target")  # fmt: skip
    parser.add_argument("--soak-seconds", type=float, default=600,
                        help="length of the soak phase; 0 skips it, 20 is a smoke run")  # fmt: skip
    parser.add_argument("--soak-rate", type=float, default=340,
                        help="messages per second during the soak")  # fmt: skip
    parser.add_argument("--soak-only", action="store_true",
                        help="skip the latency and burst phases")  # fmt: skip
    asyncio.run(main(parser.parse_args()))
