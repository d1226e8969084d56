"""In-order throughput from IRC into Matrix: appservice mode against client mode, in one
run, on a Synapse with its stock rate limits (what a homeserver one does not run looks
like), with the appservice registration loaded.

Ivan says `--messages` numbered lines in an IRC channel bridged to a Matrix room; the
clock runs from his first line to the last one seen in the room by an ordinary Matrix
client, which also checks that every line arrived once and in order. Client mode posts
through one relay account, which the homeserver throttles (0.2 msg/s after a burst of
10); appservice mode posts through ghosts, which `rate_limited: false` exempts. The
bridge's own outbox pacing is lifted in both runs, so the homeserver is the only limit.

usage: .venv/bin/python bench/matrix_appservice.py [--messages 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder is sys.path[0] and `bench/irc.py` would shadow the
# `irc` library: the project root takes its place.
sys.path.remove(sys.path[0])
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imbridge import logs, testing
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser, launch
from tests.servers.process import free_port
from tests.servers.synapse import SynapseServer, Watcher, with_appservice

FAST = {"per_second": 10_000, "burst": 10_000}


async def one_run(
    synapse: SynapseServer, ircd: Ircd, mx: dict[str, Any], invitee: str, *, state: Path, n: int
) -> float:
    """Seconds for `n` IRC lines to reach the Matrix room, all once and in order."""
    chan = ircd.channel("bench")
    ivan = await IrcUser.connect(ircd, "ivan")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[invitee])
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(state), "log": {"level": "error"},
                           "http": {"listen": mx.pop("_listen")}},
                "networks": {"mx": {**mx, "rate_limit": FAST},
                             "irc": ircd.network(rate_limit=FAST)},
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "irc", "room": chan}]}},
                "archive": {"enabled": False},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(60)

                def numbers() -> list[int]:
                    return [int(b.rsplit(" ", 1)[-1][1:]) for b in alice.bodies(room)
                            if b.rsplit(" ", 1)[-1].startswith("n")]  # fmt: skip

                t0 = time.monotonic()
                for i in range(n):
                    ivan.say(chan, f"n{i}")
                await testing.eventually(lambda: len(numbers()) >= n, timeout=600,
                                         what=f"{n} lines in Matrix", interval=0.01)  # fmt: skip
                took = time.monotonic() - t0
                if numbers() != list(range(n)):
                    raise SystemExit(f"not once and in order: {numbers()}")
                return took
    finally:
        await ivan.close()


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imbridge-bench-mxas-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tokens").mkdir()
        synapse, setup = with_appservice(tmp / "synapse", tmp / "tokens", {})  # stock limits
        synapse.start()
        ircd = launch("ngircd", "relaxed", tmp / "ircd")
        try:
            relay = synapse.register()
            client_mx = testing.matrix_network(synapse.url, relay, sync_timeout_ms=1000)
            # Client mode listens elsewhere: the appservice's pushes must find no one.
            client_mx["_listen"] = f"127.0.0.1:{free_port()}"
            client_s = await one_run(synapse, ircd, client_mx, relay.user_id, state=tmp / "c", n=n)
            as_mx = {**setup.network(), "_listen": setup.listen}
            as_s = await one_run(synapse, ircd, as_mx, setup.bot, state=tmp / "a", n=n)
        finally:
            ircd.stop()
            synapse.stop()
    print(f"IRC -> Matrix, {n} lines in order, Synapse with stock rate limits (loopback)")
    print(f"client mode (baseline): {n / client_s:8.2f} msg/s ({client_s:.2f} s)")
    print(f"appservice mode       : {n / as_s:8.2f} msg/s ({as_s:.2f} s)")
    print(f"ratio appservice/client: {client_s / as_s:.1f}x (target: at least 10x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30)
    args = parser.parse_args()
    logs.setup("error", "console")
    asyncio.run(main(args.messages))
