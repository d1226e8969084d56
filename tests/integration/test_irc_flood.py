"""A flood into a real IRC channel (ngircd; the channel paced at 20 lines a second by
the relay's rate limit, so the test is quick), watched by an ordinary `irc`-library
user: someone who speaks up behind the flood waits for the flooder's burst, not for the
flood; past the channel's backlog limit only the flooder's lines are shed, and the
channel is told once. The flooder posts on a memory network, which can post faster than
any real server would let a client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imbridge.adapters.memory import MemoryAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser, eventually

pytestmark = pytest.mark.integration

FLOOD = 80
LONG = "x" * 400  # about 17 lines of this fill one sender's burst (`fairness.BURST`)


async def test_irc_channel_serves_a_quiet_sender_first_and_sheds_only_the_flood(
    ngircd: Ircd, tmp_path: Path
) -> None:
    channel = ngircd.channel("flood")
    bob = await IrcUser.connect(ngircd, "bob")
    try:
        await bob.join(channel)
        config = parse_config(json.dumps({
            "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"}},
            "networks": {
                "m": {"type": "memory"},
                "irc": ngircd.network(rate_limit={"per_second": 20, "burst": 1},
                                      backlog={"max_items": 40}),
            },
            "gateways": {"g": {"nick_format": "<{nick}> ",
                               "rooms": [{"network": "m", "room": "#m"},
                                         {"network": "irc", "room": channel}]}},
        }))  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            assert daemon.outbox is not None
            outbox = daemon.outbox
            memory = daemon.adapters["m"]
            assert isinstance(memory, MemoryAdapter)
            for i in range(FLOOD):
                memory.hub.post("#m", "mallory", f"flood {LONG} {i}")
            await eventually(lambda: outbox.depth("irc") >= 35, what="the flood queued")
            memory.hub.post("#m", "alice", "quick question")

            def relayed() -> list[str]:
                return bob.texts(channel, "relay")

            await eventually(lambda: "<alice> quick question" in relayed(), what="alice")
            # Behind 35 or more in arrival order; behind mallory's burst in fair turns.
            assert relayed().index("<alice> quick question") < 30
            memory.hub.post("#m", "alice", "sentinel")
            await eventually(lambda: "<alice> sentinel" in relayed(), timeout=60, what="end")
            await eventually(lambda: outbox.depth("irc") == 0, what="drained")

            lines = relayed()
            floods = [int(t.rsplit(" ", 1)[1]) for t in lines if t.startswith("<mallory>")]
            shed = outbox.stats["irc"].shed
            assert shed > 0
            assert len(floods) + shed == FLOOD
            assert floods == sorted(floods)  # what went through, in order
            notices = [t for t in lines if "sending faster" in t]
            assert len(notices) == 1
            assert notices[0].startswith("imbridge: mallory (m)")
            told = [p.text for p in memory.hub.in_room("#m") if "sending faster" in p.text]
            assert told == [
                f"mallory: you are sending faster than {channel} on irc can take; some of "
                "your messages were not relayed there."
            ]
    finally:
        await bob.close()
