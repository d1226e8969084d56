"""IRC <-> XMPP across networks: the three ratios the adapters are held to, in one run.

    .venv/bin/python -m bench.cross [--latency 60] [--burst 2000] [--rounds 3]

One loopback ngircd and one Prosody; `imbridge run` in its own process, as deployed,
relays three pairs of rooms at once:

- IRC -> XMPP: Alice says it in IRC channel A, Bob reads the copy in MUC B. Its in-order
  throughput for a burst of `--burst` lines is compared with the direct XMPP path (Carol
  posts into MUC Z, which nobody bridges, and Bob reads it there), in the same run.
  Target: 0.8x or more.
- XMPP -> IRC: Alice posts in MUC C, Bob reads the copy in IRC channel D. Its added
  latency p50 is compared with that of IRC -> IRC (channel E to channel F). Target: no
  more than IRC -> IRC's + 0.5 ms. A path's added latency is over the direct path of the
  network it starts on, as `bench/xmpp.py` and `bench/irc.py` measure it: how much later
  the bridged reader sees a message than a reader in the room where it was said (Carol
  posts in MUC Z or says it in channel G, Bob reads it there). That leaves each server's
  own hop out of both sides. The same ratio over the direct IRC path for both, which
  counts Prosody's hop (about 2 ms longer than ngircd's) against the relay, is printed
  after it.
- IRC -> IRC, against the floor (`bench/floor.py`: a bare Python relay in its own process
  that only copies the line). Target: no more than the floor's added p50 + 0.6 ms.

Latencies at 5 msg/s. The burst and the latency runs are repeated `--rounds` times in
alternating order with their baselines (the machine's load drifts between runs), and the
median of the per-round ratios is the figure. Every burst is checked complete and in
order: a relay that drops or reorders does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.arrivals import Arrivals, ChannelClock, MucClock, burst, daemon_process, latencies, pct
from bench.floor import floor_process
from imbridge import logs
from imbridge.testing import xmpp_network
from tests.servers.ircd import Ircd, IrcUser, launch
from tests.servers.prosody import Prosody, XmppUser


async def main(args: argparse.Namespace) -> None:
    logs.setup(level="warning", fmt="console")
    with tempfile.TemporaryDirectory() as tmp:
        prosody = Prosody(state=Path(tmp) / "prosody")
        prosody.write_config()
        prosody.start()
        ircd = launch("ngircd", "relaxed", Path(tmp) / "ircd")
        try:
            await run(args, ircd, prosody, Path(tmp))
        finally:
            ircd.stop()
            prosody.stop()


async def run(args: argparse.Namespace, ircd: Ircd, prosody: Prosody, tmp: Path) -> None:
    jid, password = prosody.register()
    x_alice, x_bob, x_carol = [await XmppUser.login(prosody) for _ in range(3)]
    i_alice, i_bob, i_carol = await asyncio.gather(
        IrcUser.connect(ircd, "alice"), IrcUser.connect(ircd, "bob"), IrcUser.connect(ircd, "carol")
    )
    # The direct paths run in rooms nobody bridges (MUC Z, channel G), so the relay
    # neither parses nor forwards the baseline's traffic.
    xb, xc, xz = prosody.room("b"), prosody.room("c"), prosody.room("z")
    ia, i_d, ie, i_f, ig = (ircd.channel(n) for n in ("a", "d", "e", "f", "g"))
    for user, room, nick in ((x_bob, xb, "bob"), (x_bob, xz, "bob"), (x_carol, xz, "carol"),
                             (x_alice, xc, "alice")):  # fmt: skip
        await user.join(room, nick)
    await asyncio.gather(i_alice.join(ia), i_alice.join(ie), i_bob.join(i_d), i_bob.join(i_f),
                         i_bob.join(ig), i_carol.join(ig))  # fmt: skip
    in_b, in_z = MucClock(x_bob, xb), MucClock(x_bob, xz)
    in_d, in_f, in_g = ChannelClock(i_bob, i_d), ChannelClock(i_bob, i_f), ChannelClock(i_bob, ig)
    huge = {"per_second": 1_000_000, "burst": 1_000_000}
    # A burst is one sender flooding: past the default backlog the relay would shed it (as
    # it should); the bench measures how fast it relays instead.
    backlog = {"max_items": 1_000_000, "max_bytes": 1 << 30}
    config_text = json.dumps({
        "bridge": {"state_dir": str(tmp / "state"), "log": {"level": "warning"}},
        "networks": {
            "irc": ircd.network(rate_limit=huge, backlog=backlog),
            "xm": xmpp_network(prosody, jid, password, rate_limit=huge, backlog=backlog),
        },
        "gateways": {
            "ix": {"rooms": [{"network": "irc", "room": ia}, {"network": "xm", "room": xb}]},
            "xi": {"rooms": [{"network": "xm", "room": xc}, {"network": "irc", "room": i_d}]},
            "ii": {"rooms": [{"network": "irc", "room": ie}, {"network": "irc", "room": i_f}]},
        },
        "archive": {"enabled": False},
    })  # fmt: skip
    irc_to_xmpp = functools.partial(i_alice.say, ia)
    xmpp_to_irc = functools.partial(x_alice.say, xc)
    irc_to_irc = functools.partial(i_alice.say, ie)
    direct_xmpp = functools.partial(x_carol.say, xz)
    direct_irc = functools.partial(i_carol.say, ig)
    n, size = args.latency, args.burst
    rates: dict[str, list[float]] = {"direct": [], "bridged": []}
    complete = True
    lat: dict[str, list[float]] = {
        "xmpp-irc": [], "irc-irc": [], "direct-irc": [], "direct-xmpp": [], "floor": [],
    }  # fmt: skip
    try:
        async with daemon_process(config_text, tmp, irc_to_xmpp, in_b):
            await until_relayed(xmpp_to_irc, in_d)
            await until_relayed(irc_to_irc, in_f)
            for r in range(args.rounds):
                pair: list[tuple[str, Callable[[str], object], Arrivals]] = [
                    ("direct", direct_xmpp, in_z), ("bridged", irc_to_xmpp, in_b)
                ]  # fmt: skip
                for name, say, seen in pair if r % 2 == 0 else pair[::-1]:
                    rate, in_order = await burst(say, seen, f"B{name[0]}{r}x", size)
                    rates[name].append(rate)
                    complete &= in_order
                runs: list[tuple[str, Callable[[str], object], Arrivals]] = [
                    ("direct-irc", direct_irc, in_g), ("xmpp-irc", xmpp_to_irc, in_d),
                    ("irc-irc", irc_to_irc, in_f), ("direct-xmpp", direct_xmpp, in_z),
                ]  # fmt: skip
                for name, say, seen in runs if r % 2 == 0 else runs[::-1]:
                    lat[name] += await latencies(say, seen, f"l{name[0]}{name[-2]}{r}x", n)
        async with floor_process(ircd.host, ircd.port, ie, i_f, say=irc_to_irc, seen=in_f):
            lat["floor"] = await latencies(irc_to_irc, in_f, "fl", n * args.rounds)
    finally:
        for user in (x_alice, x_bob, x_carol):
            await user.close()
        for irc_user in (i_alice, i_bob, i_carol):
            await irc_user.close()
    report(rates, complete, lat, n * args.rounds)


async def until_relayed(say: Callable[[str], object], seen: Arrivals, timeout: float = 30) -> None:
    """Says probes until one shows up on the far side: that path's rooms are joined."""
    for i in range(int(timeout / 0.5)):
        say(f"probe #probe{i}")
        await asyncio.sleep(0.5)
        if any(k.startswith("#probe") for k in seen.arrived):
            return
    raise RuntimeError("a path did not relay its probe within 30 s")


def report(
    rates: dict[str, list[float]], complete: bool, lat: dict[str, list[float]], n: int
) -> None:
    for name, values in lat.items():
        print(f"latency {name:9} p50 {pct(values, 50):7.3f} ms  p99 {pct(values, 99):7.3f} ms"
              f"  ({len(values)}/{n} at 5 msg/s)")  # fmt: skip
    p50 = {name: pct(values, 50) for name, values in lat.items()}
    # Over the direct path of the network each starts on (the floor relays IRC -> IRC).
    start = {"xmpp-irc": "direct-xmpp", "irc-irc": "direct-irc", "floor": "direct-irc"}
    added = {name: p50[name] - p50[base] for name, base in start.items()}
    for name, value in added.items():
        print(f"added latency {name:9} p50 {value:7.3f} ms (over {start[name]})")
    over_irc = p50["xmpp-irc"] - p50["direct-irc"]
    for name, values in rates.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"throughput {name:8} {statistics.median(values):7.0f} msg/s median ({shown})")
    ratios = [b / d for b, d in zip(rates["bridged"], rates["direct"], strict=True)]
    print(f"all bursts complete and in order: {complete}")
    print(f"1. IRC -> XMPP throughput / direct XMPP: {statistics.median(ratios):.2f}x median "
          f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.80)")  # fmt: skip
    print(f"2. XMPP -> IRC added p50 minus IRC -> IRC added p50: "
          f"{added['xmpp-irc'] - added['irc-irc']:+.3f} ms (target <= +0.5)")  # fmt: skip
    print(f"   the same with XMPP -> IRC over the direct IRC path (Prosody's hop counted): "
          f"{over_irc - added['irc-irc']:+.3f} ms")  # fmt: skip
    print(f"3. IRC -> IRC added p50 minus the floor relay's: "
          f"{added['irc-irc'] - added['floor']:+.3f} ms (target <= +0.6)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=60, help="messages per latency run")
    parser.add_argument("--burst", type=int, default=2000, help="messages per burst")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    asyncio.run(main(parser.parse_args()))
