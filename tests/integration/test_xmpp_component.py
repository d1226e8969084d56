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
from imbridge.adapters.xmpp import XmppAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.events import Message
from tests.integration.filehost import fetch, serving
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
    xm: XmppAdapter

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
            assert isinstance(xm, XmppAdapter)
            assert xm.mode == "component"
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
        # A sentinel each way, sent after everything else: an echo or a duplicate would
        # have arrived before it, since each way keeps its order.
        bridged.bob.say(bridged.room, "sentinel from bob")
        bridged.mem.hub.post("#in", "carol", "sentinel from carol")
        await eventually(lambda: "<bob@xm> sentinel from bob" in bridged.relayed_to_memory(),
                         what="Bob's sentinel on the memory network")  # fmt: skip
        await eventually(lambda: len(bridged.said_by("carol")) >= 2, what="carol's sentinel")
        assert bridged.relayed_to_memory() == ["<bob@xm> hi carol", "<bob@xm> sentinel from bob"]
        assert [body(m) for m in bridged.said_by("carol")] == [
            "hello from carol",
            "sentinel from carol",
        ]
        # two posts, Bob's, and the two sentinels: nothing else
        assert len(bridged.mem.hub.in_room("#in")) == 5
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


def stanza_id(m: ET.Element, room: str) -> str:
    """The id the room gave a message (XEP-0359), which retractions and replies name."""
    for sid in m.findall("{urn:xmpp:sid:0}stanza-id"):
        if sid.get("by") == room:
            return sid.get("id", "")
    raise AssertionError(f"no stanza-id by {room} in {ET.tostring(m)!r}")


async def test_component_retraction_from_elsewhere_retracts_the_puppets_copy(
    bridged: Bridged,
) -> None:
    post = bridged.mem.hub.post("#in", "carol", "wrong room, sorry")
    await eventually(lambda: bridged.said_by("carol"), what="carol's message")
    copy = bridged.said_by("carol")[0]
    bridged.mem.hub.post("#in", "carol", "", kind="delete", target=post.remote_id)

    def retractions() -> list[ET.Element]:
        return [m for m in bridged.said_by("carol")
                if m.find("{urn:xmpp:message-retract:1}retract") is not None]  # fmt: skip

    await eventually(retractions, what="the retraction, from carol's own occupant")
    retract = retractions()[0].find("{urn:xmpp:message-retract:1}retract")
    assert retract is not None
    assert retract.get("id") == stanza_id(copy, bridged.room)


async def test_component_reply_from_elsewhere_names_the_rooms_stanza_id(
    bridged: Bridged,
) -> None:
    """Carol answers Bob's message on her network, and Dave answers Carol: each reply
    comes from the replier's puppet and points at the message as the room knows it."""
    question = bridged.bob.say(bridged.room, "who is on call?")
    await eventually(lambda: "<bob@xm> who is on call?" in bridged.relayed_to_memory(),
                     what="Bob's question on the memory network")  # fmt: skip
    relayed = next(p for p in bridged.mem.hub.in_room("#in") if p.relayed)
    answer = bridged.mem.hub.post("#in", "carol", "me", reply_to=relayed.remote_id)
    await eventually(lambda: bridged.said_by("carol"), what="carol's reply")
    bobs = next(m for m in bridged.bob.messages if m.get("id") == question)
    reply = bridged.said_by("carol")[0].find("{urn:xmpp:reply:0}reply")
    assert reply is not None
    assert reply.get("id") == stanza_id(bobs, bridged.room)

    bridged.mem.hub.post("#in", "dave", "thanks", reply_to=answer.remote_id)
    await eventually(lambda: bridged.said_by("dave"), what="dave's reply")
    reply = bridged.said_by("dave")[0].find("{urn:xmpp:reply:0}reply")
    assert reply is not None
    assert reply.get("id") == stanza_id(bridged.said_by("carol")[0], bridged.room)
    assert body(bridged.said_by("dave")[0]) == "thanks"


async def test_component_attachment_from_elsewhere_is_uploaded_by_the_puppet(
    prosody: Prosody, tmp_path: Path
) -> None:
    """Alice shares a file in room A on a client-mode network; in room B, bridged in
    component mode, her puppet posts it as an upload on the XMPP server."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    a, b = prosody.room("files-a"), prosody.room("files-b")
    relay, password = await asyncio.to_thread(prosody.register)
    alice, bob = await XmppUser.login(prosody), await XmppUser.login(prosody)
    config = json.dumps({
        "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning", "format": "console"}},
        "networks": {"xa": {"type": "xmpp", "jid": relay, "password": password,
                            "host": prosody.host, "port": prosody.port, "tls": "plain",
                            "nick": "relay", "ack_timeout": 5},
                     "xm": component_network(prosody, media_allow_origins=["ORIGIN"])},
        "gateways": {"g": {"rooms": [{"network": "xa", "room": a},
                                     {"network": "xm", "room": b}]}},
        "archive": {"enabled": False},
    })  # fmt: skip
    try:
        await alice.join(a, "alice")
        await bob.join(b, "bob")
        async with serving({"plan.png": (png, "image/png")}) as files, Daemon(
            parse_config(config.replace("ORIGIN", files.origin))
        ) as daemon:  # fmt: skip
            assert await daemon.ready(30)
            share = alice.client.make_message(mto=a, mbody=files.url("plan.png"),
                                              mtype="groupchat")  # fmt: skip
            share["oob"]["url"] = files.url("plan.png")
            share.send()

            def from_puppet() -> list[ET.Element]:
                return [m for m in bob.messages if m.get("from") == f"{b}/alice"]

            await eventually(from_puppet, what="the file from Alice's puppet in room B")
            (got,) = from_puppet()
            url = got.findtext("{jabber:x:oob}x/{jabber:x:oob}url") or ""
            assert url.startswith(f"{prosody.http_url}/file_share/")
            assert body(got) == url  # the body is the link alone: clients show the image
            assert await fetch(url) == (200, png)
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.parametrize("fault", ["prosody_restart", "connection_dropped"])
async def test_component_reconnect_mid_stream_loses_and_duplicates_nothing(
    prosody: Prosody, tmp_path: Path, fault: str
) -> None:
    """A memory network feeds the room through the daemon's outbox while the component's
    stream breaks: Prosody restarts (every occupant is gone, puppets must join again), or
    the connection drops (a component has no stream resumption). What the room kept, in
    its archive, is every message once and in order."""
    room = prosody.room(f"reconnect-{fault}")
    total = 120
    async with Daemon(parse_config(bridge_json(tmp_path, prosody, room))) as daemon:
        assert await daemon.ready(30)
        mem, xm = daemon.adapters["mem"], daemon.adapters["xm"]
        assert isinstance(mem, MemoryAdapter)
        assert isinstance(xm, XmppAdapter)
        assert xm.mode == "component"
        broken: asyncio.Task[None] | None = None
        for n in range(total):
            mem.hub.post("#in", "carol" if n % 3 else "dave", f"m{n}")
            if n == total // 3:  # the stream is busy: some stanzas are still on their way
                if fault == "prosody_restart":
                    broken = asyncio.create_task(asyncio.to_thread(prosody.restart))
                else:
                    client = xm._session.client
                    assert client is not None
                    client.abort()
            await asyncio.sleep(0.005)
        if broken is not None:
            await broken
        await eventually(lambda: xm._session.generation >= 2 and xm.connected, timeout=30,
                         what="a new session after the break")  # fmt: skip
        assert daemon.outbox is not None
        assert await daemon.outbox.wait_idle(30), "outbox did not drain"
    bob = await XmppUser.login(prosody)
    try:
        kept = [(m.get("from"), body(m)) for m in await bob.archive(room)]
    finally:
        await bob.close()
    said = [(f"{room}/{'carol' if n % 3 else 'dave'}", f"m{n}") for n in range(total)]
    assert [k for k in kept if k[1].startswith("m")] == said


async def test_component_correction_and_retraction_after_prosody_restart_follow_the_copy(
    bridged: Bridged, prosody: Prosody
) -> None:
    """Every occupant is gone after a server restart: the puppet joins again before it
    corrects or retracts what it said in the earlier session."""
    typo = bridged.mem.hub.post("#in", "carol", "teh plan")
    extra = bridged.mem.hub.post("#in", "carol", "ignore me")
    await eventually(lambda: len(bridged.said_by("carol")) == 2, what="carol's messages")
    first, second = bridged.said_by("carol")
    generation = bridged.xm._session.generation
    await asyncio.to_thread(prosody.restart)
    await eventually(lambda: bridged.xm._session.generation > generation and bridged.xm.connected,
                     timeout=30, what="a new session after the restart")  # fmt: skip
    erin = await XmppUser.login(prosody)  # Bob's client lost its session: Erin watches now
    try:
        await erin.join(bridged.room, "erin")
        bridged.mem.hub.post("#in", "carol", "the plan", kind="edit", target=typo.remote_id)
        bridged.mem.hub.post("#in", "carol", "", kind="delete", target=extra.remote_id)

        def carols() -> list[ET.Element]:
            return [m for m in erin.messages if m.get("from") == f"{bridged.room}/carol"]

        await eventually(lambda: len(carols()) == 2, what="the correction and the retraction")
        correction, retraction = carols()
    finally:
        await erin.close()
    replace = correction.find("{urn:xmpp:message-correct:0}replace")
    assert replace is not None
    assert replace.get("id") == first.get("id")
    assert body(correction) == "the plan"
    retract = retraction.find("{urn:xmpp:message-retract:1}retract")
    assert retract is not None
    assert retract.get("id") == stanza_id(second, bridged.room)
