"""SIGHUP to a running `imbridge run`: an invalid config is refused with every error
logged and the bridge relays on with the old one; a valid one that adds a gateway (and
changes a nick format, the policy and the log level) applies at once, with no QUIT, PART
or JOIN in the channels that did not change, as an IRC user sitting in them sees it, and
no dropped connection; a changed network section reconnects that network alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fault_helpers import BridgeProcess, config_text, poll, xmpp_network
from tests.servers.ircd import Ircd, IrcUser, Seen
from tests.servers.prosody import Prosody, XmppUser

pytestmark = pytest.mark.integration


def relay_events(user: IrcUser) -> list[Seen]:
    """JOIN, PART, QUIT and KICK of the relay, as `user` saw them."""
    return [
        s
        for s in user.seen
        if s.nick.startswith("relay") and s.kind in ("join", "part", "quit", "kick")
    ]


def from_relay(user: XmppUser, room: str) -> list[str]:
    def body(m: ET.Element) -> str:
        return m.findtext("{jabber:client}body") or ""

    return [body(m) for m in user.messages if m.get("from", "").startswith(f"{room}/relay")]


async def test_sighup_refuses_a_bad_config_and_applies_a_good_one_rejoining_nothing_unchanged(
    ngircd: Ircd, prosody: Prosody, tmp_path: Path
) -> None:
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    one, two = ngircd.channel("one"), ngircd.channel("two")
    room1, room2 = prosody.room("one"), prosody.room("two")
    networks: dict[str, dict[str, Any]] = {
        "irc": ngircd.network(),
        "xm": xmpp_network(prosody, relay_jid, relay_pw),
    }
    state = tmp_path / "state"
    first = config_text(state, networks, {"g1": [("irc", one), ("xm", room1)]})
    config = tmp_path / "bridge.yaml"
    config.write_text(first)
    bridge = BridgeProcess(config, tmp_path / "bridge.log")
    async with contextlib.AsyncExitStack() as stack:
        ivan = await IrcUser.connect(ngircd, "ivan")  # sits in the unchanged channel
        stack.push_async_callback(ivan.close)
        olga = await IrcUser.connect(ngircd, "olga")  # waits in the channel added later
        stack.push_async_callback(olga.close)
        xavier = await XmppUser.login(prosody)
        stack.push_async_callback(xavier.close)
        await ivan.join(one)
        await olga.join(two)
        await xavier.join(room1, "xavier")
        await xavier.join(room2, "xavier")

        bridge.start()
        stack.callback(bridge.terminate)
        await bridge.ready()
        await poll(lambda: relay_events(ivan), 15, "the relay's JOIN in the first channel")

        async def relays(irc_text: str, xmpp_text: str, *, prefix: str = "<{}@{}> ") -> None:
            """One line each way through the first gateway, with the expected prefix."""
            ivan.say(one, irc_text)
            xavier.say(room1, xmpp_text)
            want_x = prefix.format(ivan.nick, "irc") + irc_text
            want_i = prefix.format("xavier", "xm") + xmpp_text
            await poll(lambda: want_x in from_relay(xavier, room1), 15, f"{want_x!r} in XMPP")
            await poll(lambda: want_i in ivan.texts(one), 15, f"{want_i!r} in IRC")

        await relays("before", "before too")

        # 1. Invalid: two errors. Both are logged; the old config stays in force.
        broken = json.loads(first)
        broken["networks"]["irc"]["port"] = "not a port"
        broken["gateways"]["g1"]["colour"] = "blue"
        config.write_text(json.dumps(broken))
        bridge.hup()
        await poll(lambda: bridge.count("reload_refused") == 1, 15, "the refusal")
        issues = [e["issue"] for e in bridge.events() if e.get("event") == "config_invalid"]
        assert any("networks.irc.port" in i for i in issues), issues
        assert any("gateways.g1.colour" in i for i in issues), issues
        assert bridge.alive()
        await relays("after the bad reload", "still here")

        # 2. Valid: a second gateway, a new nick format for the first, a policy rule and
        # a log level; no network section changes.
        assert bridge.count("relayed") == 0  # a debug line: not logged at info
        good = json.loads(first)
        good["gateways"]["g1"]["nick_format"] = "[{nick}@{network}] "
        good["bridge"]["log"]["level"] = "debug"
        good["policy"] = {"default": "allow", "rules": [
            {"name": "no-secrets", "action": "deny", "from": {"network": "irc"},
             "text": "(?i)\\bsecret\\b"},
        ]}  # fmt: skip
        good["gateways"]["g2"] = {
            "nick_format": "<{nick}@{network}> ",
            "rooms": [{"network": "irc", "room": two}, {"network": "xm", "room": room2}],
        }
        config.write_text(json.dumps(good))
        bridge.hup()
        await poll(lambda: bridge.count("config_reloaded") == 1, 15, "the reload")
        reloaded = next(e for e in bridge.events() if e.get("event") == "config_reloaded")
        assert reloaded["reconnected"] == [], reloaded  # no network section changed
        await poll(lambda: relay_events(olga), 15, "the relay's JOIN in the new channel")
        olga.say(two, "new gateway")
        xavier.say(room2, "new gateway too")
        await poll(
            lambda: f"<{olga.nick}@irc> new gateway" in from_relay(xavier, room2),
            15,
            "IRC -> XMPP through the new gateway",
        )
        await poll(
            lambda: "<xavier@xm> new gateway too" in olga.texts(two),
            15,
            "XMPP -> IRC through the new gateway",
        )
        ivan.say(one, "the secret plan")
        await relays("after the good reload", "and again", prefix="[{}@{}] ")
        assert not any("secret" in b for b in from_relay(xavier, room1))
        assert bridge.count("policy_denied") == 1
        assert bridge.count("relayed") > 0  # the new level took effect

        # 3. A changed network section: that network alone reconnects.
        changed = json.loads(json.dumps(good))
        changed["networks"]["xm"]["ack_timeout"] = 6
        config.write_text(json.dumps(changed))
        bridge.hup()
        await poll(lambda: bridge.count("config_reloaded") == 2, 15, "the second reload")
        second = [e for e in bridge.events() if e.get("event") == "config_reloaded"][-1]
        assert second["reconnected"] == ["xm"], second
        await relays("after the xmpp change", "reconnected", prefix="[{}@{}] ")

        # In the unchanged channel the relay joined once, at start, and never left.
        assert [(s.kind, s.target.lower()) for s in relay_events(ivan)] == [("join", one.lower())]
        # IRC never reconnected; XMPP once, when its own section changed.
        for event in ("disconnected", "reconnecting", "reconnected", "connect_failed"):
            assert bridge.count(event, network="irc") == 0, bridge.tail()
        assert bridge.count("connected", network="xm") == 2  # logged once each time
        # Nothing relayed twice, nothing echoed back.
        assert len(from_relay(xavier, room1)) == 4
        assert len([t for t in ivan.texts(one) if "xavier@xm" in t]) == 4
        assert bridge.terminate() == 0, bridge.tail()
