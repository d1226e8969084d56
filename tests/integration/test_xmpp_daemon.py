"""Two MUC rooms on a real Prosody relayed through the whole daemon, watched by ordinary
slixmpp users: what Alice says in room A, Bob sees in room B with her name, and the
other way round; corrections and retractions follow the relayed copy; nothing echoes."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import slixmpp

from imbridge.config.load import parse_config
from imbridge.config.schema import Config
from imbridge.daemon import Daemon
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration

NS_SID = "{urn:xmpp:sid:0}"


def bridge_yaml(state: Path, server: Prosody, jid: str, password: str, rooms: list[str],
                **network: Any) -> str:  # fmt: skip
    """A config for one XMPP network whose rooms form one gateway (JSON is YAML)."""
    return json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning", "format": "console"}},
        "networks": {"xm": {
            "type": "xmpp", "jid": jid, "password": password, "host": server.host,
            "port": server.port, "tls": "plain", "nick": "relay", "ack_timeout": 5, **network,
        }},
        "gateways": {"g": {"nick_format": "<{nick}@{network}> ",
                           "rooms": [{"network": "xm", "room": r} for r in rooms]}},
        "archive": {"enabled": False},
    })  # fmt: skip


@dataclass
class Pair:
    """Alice in room A, Bob in room B; the relay's account, not yet connected."""

    server: Prosody
    alice: XmppUser
    bob: XmppUser
    a: str
    b: str
    relay: tuple[str, str]

    def config(self, state: Path, **network: Any) -> Config:
        jid, password = self.relay
        return parse_config(bridge_yaml(state, self.server, jid, password, [self.a, self.b],
                                        **network))  # fmt: skip

    def from_relay(self, user: XmppUser, room: str) -> list[ET.Element]:
        return [m for m in user.messages if m.get("from") == f"{room}/relay"]


def body(m: ET.Element) -> str:
    return m.findtext("{jabber:client}body") or ""


def stanza_id(m: ET.Element) -> str:
    sid = m.find(f"{NS_SID}stanza-id")
    assert sid is not None
    return sid.get("id", "")


@pytest.fixture
async def pair(prosody: Prosody) -> AsyncIterator[Pair]:
    relay = await asyncio.to_thread(prosody.register)
    alice = await XmppUser.login(prosody)
    bob = await XmppUser.login(prosody)
    a, b = prosody.room("a"), prosody.room("b")
    try:
        await alice.join(a, "alice")
        await bob.join(b, "bob")
        yield Pair(prosody, alice, bob, a, b, relay)
    finally:
        await alice.close()
        await bob.close()


async def test_xmpp_rooms_relay_text_emote_nick_prefix_without_echo(
    pair: Pair, tmp_path: Path
) -> None:
    async with Daemon(pair.config(tmp_path)) as daemon:
        assert await daemon.ready(30)
        pair.alice.say(pair.a, "hello bob")
        pair.alice.say(pair.a, "/me waves")
        await eventually(lambda: len(pair.from_relay(pair.bob, pair.b)) >= 2, what="A -> B")
        text, emote = pair.from_relay(pair.bob, pair.b)[:2]
        assert body(text) == "<alice@xm> hello bob"
        assert body(emote) == "/me <alice@xm> waves"
        assert text.find("{urn:imbridge:relay:0}relay") is not None

        pair.bob.say(pair.b, "hi alice")
        await eventually(lambda: len(pair.from_relay(pair.alice, pair.a)) >= 1, what="B -> A")
        assert body(pair.from_relay(pair.alice, pair.a)[0]) == "<bob@xm> hi alice"
        # No echo: a sentinel each way, said after everything else; a copy relayed back
        # would have reached its room before the sentinel from that side.
        pair.alice.say(pair.a, "sentinel from alice")
        pair.bob.say(pair.b, "sentinel from bob")
        await eventually(lambda: len(pair.from_relay(pair.bob, pair.b)) >= 3, what="A sentinel")
        await eventually(lambda: len(pair.from_relay(pair.alice, pair.a)) >= 2, what="B sentinel")
        assert [body(m) for m in pair.from_relay(pair.alice, pair.a)] == [
            "<bob@xm> hi alice",
            "<bob@xm> sentinel from bob",
        ]
        assert [body(m) for m in pair.from_relay(pair.bob, pair.b)][2:] == [
            "<alice@xm> sentinel from alice"
        ]


async def test_xmpp_correction_and_retraction_follow_the_relayed_copy(
    pair: Pair, tmp_path: Path
) -> None:
    async with Daemon(pair.config(tmp_path)) as daemon:
        assert await daemon.ready(30)
        first = pair.alice.say(pair.a, "helo")
        await eventually(lambda: pair.from_relay(pair.bob, pair.b), what="message in B")
        copy = pair.from_relay(pair.bob, pair.b)[0]
        pair.alice.say(pair.a, "hello", replace=first)
        await eventually(lambda: len(pair.from_relay(pair.bob, pair.b)) >= 2, what="correction")
        correction = pair.from_relay(pair.bob, pair.b)[1]
        replace = correction.find("{urn:xmpp:message-correct:0}replace")
        assert replace is not None
        assert replace.get("id") == copy.get("id")  # names the earlier relayed stanza
        assert body(correction) == "<alice@xm> hello"

        # Alice retracts (XEP-0424: in a room, by the stanza-id the room gave it).
        original = next(m for m in pair.alice.messages if m.get("id") == first)
        msg = pair.alice.client.make_message(mto=pair.a, mtype="groupchat")
        msg["retract"]["id"] = stanza_id(original)
        msg.send()

        def retracted() -> list[ET.Element]:
            return [m for m in pair.from_relay(pair.bob, pair.b)
                    if m.find("{urn:xmpp:message-retract:1}retract") is not None]  # fmt: skip

        await eventually(retracted, what="retraction in B")
        retract = retracted()[0].find("{urn:xmpp:message-retract:1}retract")
        assert retract is not None
        assert retract.get("id") == stanza_id(copy)


async def test_xmpp_reply_attachment_and_subject_cross_between_rooms(
    pair: Pair, tmp_path: Path
) -> None:
    async with Daemon(pair.config(tmp_path)) as daemon:
        assert await daemon.ready(30)
        first = pair.alice.say(pair.a, "question?")
        await eventually(lambda: pair.from_relay(pair.bob, pair.b), what="question in B")
        copy = pair.from_relay(pair.bob, pair.b)[0]

        # Bob replies to the relayed copy (XEP-0461, by the room's stanza-id): Alice's
        # copy of his answer replies to her own original.
        reply = pair.bob.client.make_message(mto=pair.b, mbody="> question?\nanswer",
                                             mtype="groupchat")  # fmt: skip
        reply["reply"]["id"] = stanza_id(copy)
        reply["reply"]["to"] = f"{pair.b}/relay"
        reply.send()
        await eventually(lambda: pair.from_relay(pair.alice, pair.a), what="reply in A")
        answer = pair.from_relay(pair.alice, pair.a)[0]
        target = answer.find("{urn:xmpp:reply:0}reply")
        assert target is not None
        original = next(m for m in pair.alice.messages if m.get("id") == first)
        assert target.get("id") == stanza_id(original)

        # An upload link (XEP-0066) arrives as an attachment, shown as a link.
        link = pair.alice.client.make_message(mto=pair.a, mbody="https://example.org/cat.png",
                                              mtype="groupchat")  # fmt: skip
        link["oob"]["url"] = "https://example.org/cat.png"
        link.send()
        await eventually(lambda: len(pair.from_relay(pair.bob, pair.b)) >= 2, what="link")
        relayed_link = pair.from_relay(pair.bob, pair.b)[1]
        assert relayed_link.findtext("{jabber:x:oob}x/{jabber:x:oob}url") == (
            "https://example.org/cat.png"
        )

        # A subject change is announced in the other room.
        pair.alice.client.plugin["xep_0045"].set_subject(slixmpp.JID(pair.a), "release day")
        await eventually(lambda: len(pair.from_relay(pair.bob, pair.b)) >= 3, what="subject")
        assert "release day" in body(pair.from_relay(pair.bob, pair.b)[2])
