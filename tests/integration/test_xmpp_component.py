"""Component mode against a real Prosody: the daemon relays between a memory network and a
MUC room in which every relayed sender is an occupant of their own (XEP-0114 puppets),
watched by an ordinary slixmpp user."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapters.memory import MemoryAdapter
from imbridge.adapters.xmpp import ComponentAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.events import Message
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration

NS_RELAY = "{urn:imbridge:relay:0}relay"


def component_network(server: Prosody, **extra: Any) -> dict[str, Any]:
    return {"type": "xmpp", "mode": "component", "component": server.component_domain,
            "secret": server.component_secret, "host": server.host,
            "port": server.component_port, "nick": "relay", "ack_timeout": 5,
            **extra}  # fmt: skip


def bridge_json(state: Path, server: Prosody, room: str) -> str:
    return json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning", "format": "console"}},
        "networks": {"mem": {"type": "memory"}, "xm": component_network(server)},
        "gateways": {"g": {"nick_format": "<{nick}@{network}> ",
                           "rooms": [{"network": "mem", "room": "#in"},
                                     {"network": "xm", "room": room}]}},
        "archive": {"enabled": False},
    })  # fmt: skip


def body(m: ET.Element) -> str:
    return m.findtext("{jabber:client}body") or ""


@dataclass
class Bridged:
    room: str
    bob: XmppUser
    mem: MemoryAdapter
    xm: ComponentAdapter

    def said_by(self, nick: str) -> list[ET.Element]:
        """What Bob saw occupant `nick` say in the room."""
        return [m for m in self.bob.messages if m.get("from") == f"{self.room}/{nick}"]

    def relayed_to_memory(self) -> list[str]:
        return [o.event.text for o in self.mem.sent if isinstance(o.event, Message)]


@pytest.fixture
async def bridged(prosody: Prosody, tmp_path: Path) -> AsyncIterator[Bridged]:
    room = prosody.room("component")
    bob = await XmppUser.login(prosody)
    try:
        await bob.join(room, "bob")
        async with Daemon(parse_config(bridge_json(tmp_path, prosody, room))) as daemon:
            assert await daemon.ready(30)
            mem, xm = daemon.adapters["mem"], daemon.adapters["xm"]
            assert isinstance(mem, MemoryAdapter)
            assert isinstance(xm, ComponentAdapter)
            yield Bridged(room, bob, mem, xm)
    finally:
        await bob.close()


async def test_component_relays_each_sender_as_their_own_occupant_without_echo(
    bridged: Bridged, prosody: Prosody
) -> None:
    squatter = await XmppUser.login(prosody)  # holds the nick one puppet would want
    try:
        await squatter.join(bridged.room, "dave")
        bridged.mem.hub.post("#in", "carol", "hello from carol")
        bridged.mem.hub.post("#in", "dave", "hello from dave")
        await eventually(lambda: bridged.said_by("carol"), what="carol's puppet speaks")
        await eventually(lambda: bridged.said_by("dave [mem]"), what="dave's puppet speaks")
        (carol,) = bridged.said_by("carol")
        assert body(carol) == "hello from carol"  # the nick names her: no <carol@mem> prefix
        assert carol.find(NS_RELAY) is not None
        assert body(bridged.said_by("dave [mem]")[0]) == "hello from dave"
        assert not [m for m in squatter.messages if m.get("from") == f"{bridged.room}/dave"
                    and body(m) == "hello from dave"]  # fmt: skip

        bridged.bob.say(bridged.room, "hi carol")
        await eventually(lambda: "<bob@xm> hi carol" in bridged.relayed_to_memory(),
                         what="Bob's message on the memory network")  # fmt: skip
        await asyncio.sleep(1.0)  # room for an echo or a duplicate to show itself
        assert bridged.relayed_to_memory() == ["<bob@xm> hi carol"]
        assert len(bridged.said_by("carol")) == 1
        assert len(bridged.mem.hub.in_room("#in")) == 3  # two posts and Bob's, nothing else
    finally:
        await squatter.close()


async def test_component_correction_from_elsewhere_corrects_the_puppets_message(
    bridged: Bridged,
) -> None:
    post = bridged.mem.hub.post("#in", "carol", "helo")
    await eventually(lambda: bridged.said_by("carol"), what="carol's message")
    original = bridged.said_by("carol")[0]
    bridged.mem.hub.post("#in", "carol", "hello", kind="edit", target=post.remote_id)
    await eventually(lambda: len(bridged.said_by("carol")) >= 2, what="the correction")
    correction = bridged.said_by("carol")[1]
    replace = correction.find("{urn:xmpp:message-correct:0}replace")
    assert replace is not None
    assert replace.get("id") == original.get("id")
    assert body(correction) == "hello"
