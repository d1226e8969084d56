"""`relay_membership` on real servers: a crowd joining an ngircd channel and then
dropping off at once (a reconnect storm, a netsplit) reaches the Prosody MUC of the same
gateway as one line per debounce window, naming two and counting the rest."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.testing import xmpp_network
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration

CROWD = 8


def body(m: ET.Element) -> str:
    return m.findtext("{jabber:client}body") or ""


async def test_irc_join_and_quit_storms_reach_xmpp_as_one_line_each(
    prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc, chan = prosody.room("storm"), ngircd.channel("storm")
    xavier = await XmppUser.login(prosody)
    ivan = await IrcUser.connect(ngircd, "ivan")
    crowd = [await IrcUser.connect(ngircd, f"c{i}") for i in range(CROWD)]

    def notices() -> list[str]:
        return [
            body(m)
            for m in xavier.messages
            if m.get("from") == f"{muc}/relay" and body(m).startswith("* ")
        ]

    try:
        await xavier.join(muc, "xavier")
        await ivan.join(chan)
        config = parse_config(json.dumps({
            "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"}},
            "networks": {"irc": ngircd.network(),
                         "xm": xmpp_network(prosody, relay_jid, relay_pw)},
            "gateways": {"g": {"relay_membership": True, "membership_window": 3,
                               "rooms": [{"network": "irc", "room": chan},
                                         {"network": "xm", "room": muc}]}},
            "archive": {"enabled": False},
        }))  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            assert daemon.relay is not None
            membership = daemon.relay.membership
            assert membership is not None
            await asyncio.gather(*(c.join(chan) for c in crowd))
            await eventually(lambda: len(notices()) == 1, timeout=30, what="the join line")
            await asyncio.gather(*(c.close() for c in crowd))
            await eventually(lambda: len(notices()) == 2, timeout=30, what="the quit line")
            ivan.say(chan, "sentinel")
            await eventually(
                lambda: any(body(m).endswith("sentinel") for m in xavier.messages),
                timeout=15,
                what="the sentinel",
            )
            assert membership.open_windows == 0  # no line still to come
            joined, left = notices()
            others = f"and {CROWD - 2} others"
            assert joined.endswith(f"{others} joined {chan} on irc"), joined
            assert left.endswith(f"{others} left {chan} on irc"), left
            assert len(notices()) == 2
    finally:
        await xavier.close()
        await ivan.close()
