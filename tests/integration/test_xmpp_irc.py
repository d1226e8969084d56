"""IRC ⇄ XMPP through the whole daemon: an ngircd channel and a Prosody MUC in one
gateway, each watched by an ordinary client of its own network."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from imbridge.adapters.xmpp import XmppAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration


def body(m: ET.Element) -> str:
    return m.findtext("{jabber:client}body") or ""


async def test_irc_and_xmpp_relay_both_ways_with_emotes_and_hostile_controls(
    prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc = prosody.room("irc")
    chan = ngircd.channel("xm")
    xavier = await XmppUser.login(prosody)
    ivan = await IrcUser.connect(ngircd, "ivan")

    def from_relay() -> list[str]:
        return [body(m) for m in xavier.messages if m.get("from") == f"{muc}/relay"]

    try:
        await xavier.join(muc, "xavier")
        await ivan.join(chan)
        config = parse_config(json.dumps({
            "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"}},
            "networks": {
                "irc": ngircd.network(),
                "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                       "host": prosody.host, "port": prosody.port, "tls": "plain",
                       "nick": "relay"},
            },
            "gateways": {"g": {"rooms": [{"network": "irc", "room": chan},
                                         {"network": "xm", "room": muc}]}},
            "archive": {"enabled": False},
        }))  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            xm = daemon.adapters["xm"]
            assert isinstance(xm, XmppAdapter)
            generation = xm._session.generation
            ivan.say(chan, "hello xmpp")
            ivan.act(chan, "waves")
            # Every C0 control IRC can carry in a line (not NUL, CR, LF), formatting
            # codes included, must reach XMPP as readable text over a valid stream.
            controls = "".join(chr(c) for c in range(1, 32) if c not in (10, 13))
            ivan.say(chan, f"ctl {controls} end")
            await eventually(lambda: len(from_relay()) >= 3, what="IRC -> XMPP")
            text, emote, hostile = from_relay()[:3]
            assert text == f"<{ivan.nick}@irc> hello xmpp"
            assert emote == f"/me <{ivan.nick}@irc> waves"
            assert hostile.startswith(f"<{ivan.nick}@irc> ctl")
            assert hostile.endswith("end")

            xavier.say(muc, "hello irc")
            xavier.say(muc, "/me nods")
            await eventually(lambda: len(ivan.messages(chan)) >= 2, what="XMPP -> IRC")
            line, action = ivan.messages(chan)[:2]
            assert line.text == "<xavier@xm> hello irc"
            assert action.kind == "action"
            assert action.text.endswith("nods")
            # No echo back into either room: a sentinel each way comes through next.
            ivan.say(chan, "sentinel from irc")
            xavier.say(muc, "sentinel from xmpp")
            await eventually(lambda: len(from_relay()) >= 4, what="the IRC sentinel in XMPP")
            await eventually(lambda: len(ivan.messages(chan)) >= 3, what="the XMPP sentinel")
            assert from_relay()[3] == f"<{ivan.nick}@irc> sentinel from irc"
            assert ivan.messages(chan)[2].text == "<xavier@xm> sentinel from xmpp"
            assert len(from_relay()) == 4
            assert len(ivan.messages(chan)) == 3
            assert xm.connected
            assert xm._session.generation == generation  # the XMPP stream was never dropped
    finally:
        await xavier.close()
        await ivan.close()
