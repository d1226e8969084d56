"""The end-to-end benchmark's soak phase: a steady stream over all three networks for
minutes, with the imbridge process's resident size sampled throughout.

What a leak looks like is RSS that keeps climbing once caches, pools and the allocator
have reached their working size; so the figure is the growth from the end of the
warm-up (the first fifth of the run) to the end, with the peak after warm-up beside it.

The stream: IRC and XMPP take turns at `rate` msg/s in all (kept off Matrix by the same
policy rule as the burst, since Synapse takes a client's messages at 10-40/s here); one
message in 100 from IRC is worded to cross into Matrix too; and a Matrix user posts
every 2 s. Every message must arrive on each network it is relayed to, in order.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.e2e_world import World, rss
from imbridge import testing

WARMUP_SHARE = 0.2
SAMPLE_EVERY_S = 5.0
MATRIX_EVERY_S = 2.0
TO_MATRIX_EVERY = 100


@dataclass
class Soak:
    messages: int = 0
    seconds: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the start, VmRSS in MiB)."""
    warm: float = 0.0
    end: float = 0.0
    peak_after_warmup: float = 0.0
    late: float = 0.0
    """How far the senders fell behind the schedule at worst, in seconds."""
    disorder: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        return self.end - self.warm


def _key_lists(n: int) -> tuple[list[str], list[str], list[str]]:
    """Keys sent from IRC (all), from XMPP, and those from IRC worded to reach Matrix."""
    from_irc = [f"kS{i}" for i in range(0, n, 2)]
    from_xm = [f"kS{i}" for i in range(1, n, 2)]
    to_mx = [k for j, k in enumerate(from_irc) if j % TO_MATRIX_EVERY == 0]
    return from_irc, from_xm, to_mx


async def soak(world: World, pid: int, seconds: float, rate: float) -> Soak:
    """Runs the stream for `seconds` at `rate` msg/s, waits for every message, and
    returns the RSS samples and the growth after warm-up."""
    n = int(seconds * rate)
    from_irc, from_xm, to_mx = _key_lists(n)
    mx_keys: list[str] = []
    result = Soak(messages=n)
    start = time.perf_counter()
    sending = True

    async def sample() -> None:
        while sending:
            result.samples.append((time.perf_counter() - start, rss(pid)[0]))
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def from_matrix() -> None:
        i = 0
        while sending:
            key = f"kSm{i}"
            mx_keys.append(key)
            await world.matrix_say(f"soak {key}")
            i += 1
            await asyncio.sleep(MATRIX_EVERY_S)

    tasks = [asyncio.create_task(sample()), asyncio.create_task(from_matrix())]
    try:
        to_mx_set = set(to_mx)
        for i in range(n):
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                result.late = max(result.late, now - due)
            key = f"kS{i}"
            if i % 2:
                world.xmpp_say(f"soak {key}")
            else:
                world.irc_say(f"{'soakmx' if key in to_mx_set else 'soak'} {key}")
    finally:
        sending = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    a = world.arrivals
    want = {"xm": [*from_irc, *mx_keys], "irc": [*from_xm, *mx_keys], "mx": to_mx}
    await testing.eventually(
        lambda: all(a.has(net, keys) for net, keys in want.items()),
        max(60.0, seconds),
        "every soak message",
        lambda: ", ".join(
            f"{net}: {sum((net, k) not in a.first for k in keys)} missing"
            for net, keys in want.items()
        ),
        interval=0.5,
    )
    result.seconds = time.perf_counter() - start
    for net, parts in (("xm", (from_irc, mx_keys)), ("irc", (from_xm, mx_keys)), ("mx", (to_mx,))):
        for part in parts:
            if part and not a.in_order(net, part):
                result.disorder.append(f"{net}: {part[0][:3]}*")
    await asyncio.sleep(2)  # settled, as the idle figure is
    result.samples.append((time.perf_counter() - start, rss(pid)[0]))
    cut = seconds * WARMUP_SHARE
    warm = [r for t, r in result.samples if t <= cut] or [result.samples[0][1]]
    after = [r for t, r in result.samples if t > cut] or [result.samples[-1][1]]
    result.warm, result.end = warm[-1], result.samples[-1][1]
    result.peak_after_warmup = max(after)
    return result


def soak_lines(s: Soak, target_mib: float) -> list[str]:
    ok = "ok" if s.growth <= target_mib else "OVER TARGET"
    curve = "  ".join(f"{t:4.0f}s {r:5.1f}" for t, r in s.samples[:: max(1, len(s.samples) // 12)])
    return [
        f"soak: {s.messages} messages over IRC and XMPP (1 in {TO_MATRIX_EVERY} from IRC also "
        f"into Matrix, a Matrix post every {MATRIX_EVERY_S:.0f} s) in {s.seconds:.0f} s, "
        f"senders at most {s.late:.2f} s behind schedule; out of order: "
        f"{', '.join(s.disorder) or 'none'}",
        f"  RSS {s.warm:5.1f} MiB after warm-up ({WARMUP_SHARE:.0%} of the run), "
        f"{s.end:5.1f} MiB at the end, peak after warm-up {s.peak_after_warmup:5.1f} MiB: "
        f"growth {s.growth:+.1f} MiB (target <= {target_mib:.0f}: {ok})",
        f"  RSS over time (MiB): {curve}",
    ]
