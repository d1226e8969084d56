"""What an XMPP user does beyond room messages reaches the archive, on a real Prosody: a
XEP-0444 reaction in a bridged room is archived with the message it answers (and taking
it back, as a removal), without being relayed; a private chat message to the relay's
JID, or a private message through a room, is archived and answered once."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.db import Database
from imbridge.direct import ARCHIVED_REPLY
from imbridge.testing import archive_hits as search
from tests.integration.test_xmpp_component import component_network
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration

NS_REACTIONS = "urn:xmpp:reactions:0"


def export(path: Path) -> dict[str, dict[str, Any]]:
    module = importlib.import_module("imbridge.commands.archive")
    out, err = io.StringIO(), io.StringIO()
    assert module.archive_export(path, fmt="jsonl", out=out, err=err) == 0, err.getvalue()
    items = [json.loads(line) for line in out.getvalue().splitlines()]
    return {i["event"]["id"]: i["event"] for i in items}


class Person(XmppUser):
    """A test user who also keeps the chat messages sent to them (not only room traffic)."""

    def __init__(self, server: Prosody, jid: str, password: str) -> None:
        super().__init__(server, jid, password)
        self.chats: list[ET.Element] = []
        self.client.add_event_handler("message", self._chat)

    def _chat(self, msg: Any) -> None:
        if msg["type"] in ("chat", "normal"):
            self.chats.append(msg.xml)

    def answers(self, sender: str) -> list[str]:
        """Bodies of the chat messages `sender` (a bare or full JID) sent this user."""
        return [
            m.findtext("{jabber:client}body") or ""
            for m in self.chats
            if m.get("from", "") == sender or m.get("from", "").partition("/")[0] == sender
        ]

    def chat(self, to: str, body: str) -> None:
        self.client.make_message(mto=to, mbody=body, mtype="chat").send()

    def react(self, room: str, target: str, *keys: str, store: bool = True) -> None:
        """A XEP-0444 update: this user's whole set of reactions on message `target`."""
        msg = self.client.make_message(mto=room, mtype="groupchat")
        reactions = ET.SubElement(msg.xml, f"{{{NS_REACTIONS}}}reactions", {"id": target})
        for key in keys:
            ET.SubElement(reactions, f"{{{NS_REACTIONS}}}reaction").text = key
        if store:  # XEP-0444 §: a store hint, so the room archives a message without body
            ET.SubElement(msg.xml, "{urn:xmpp:hints}store")
        msg.send()

    @classmethod
    async def login(cls, server: Prosody) -> Person:
        jid, password = await asyncio.to_thread(server.register)
        user = cls(server, jid, password)
        await user.connect()
        return user


def stanza_id(m: ET.Element) -> str:
    sid = m.find("{urn:xmpp:sid:0}stanza-id")
    assert sid is not None
    return sid.get("id", "")


@asynccontextmanager
async def archiving_bridge(
    tmp_path: Path, network: dict[str, Any], rooms: list[str]
) -> AsyncIterator[tuple[Path, Daemon]]:
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps({
        "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
        "networks": {"xm": network},
        "gateways": {"g": {"rooms": [{"network": "xm", "room": r} for r in rooms]}},
        "archive": {"retention_days": 30},
    }))  # fmt: skip
    config = load_config(path)
    state = config.bridge.state_dir
    async with Database(state / "imbridge.db", {"archive": ARCHIVE_MIGRATIONS}):
        pass  # harmless once the daemon migrates the archive itself
    async with Daemon(config, recorder=ArchiveStore(config.archive, state_dir=state)) as daemon:
        assert await daemon.ready(30)
        yield path, daemon


def client_network(server: Prosody, relay: tuple[str, str]) -> dict[str, Any]:
    jid, password = relay
    return {"type": "xmpp", "jid": jid, "password": password, "host": server.host,
            "port": server.port, "tls": "plain", "nick": "relay", "ack_timeout": 5}  # fmt: skip


async def test_xmpp_reaction_is_archived_with_its_target_and_its_removal(
    prosody: Prosody, tmp_path: Path
) -> None:
    relay = await asyncio.to_thread(prosody.register)
    alice, bob = await Person.login(prosody), await Person.login(prosody)
    a, b = prosody.room("a"), prosody.room("b")
    try:
        await alice.join(a, "alice")
        await bob.join(b, "bob")
        async with archiving_bridge(tmp_path, client_network(prosody, relay), [a, b]) as (
            path,
            _,
        ):
            alice.say(a, "ship it on friday?")
            await eventually(lambda: bob.bodies(b), timeout=15, what="the message in B")
            copy = next(m for m in bob.messages if m.get("from") == f"{b}/relay")
            # Bob reacts to the relayed copy (by the room's stanza-id, XEP-0444 §4.1),
            # changes his mind, then takes the rest back with an update that carries no
            # store hint (Prosody then relays it live but keeps it out of the archive).
            bob.react(b, stanza_id(copy), "👍", "🚀")
            bob.react(b, stanza_id(copy), "🚀")
            bob.react(b, stanza_id(copy), store=False)
            bob.say(b, "sentinel after the reactions")
            await eventually(lambda: any("sentinel" in t for t in alice.bodies(a)),
                             timeout=15, what="sentinel in A")  # fmt: skip
        # Nothing but the two messages crossed: reactions are not relayed (yet).
        assert [m.find(f"{{{NS_REACTIONS}}}reactions") for m in alice.messages
                if m.get("from") == f"{a}/relay"] == [None]  # fmt: skip
        kept = [m for m in await bob.archive(b) if m.find(f"{{{NS_REACTIONS}}}reactions")]
        assert len(kept) == 2  # the room archived the two updates with a store hint only
    finally:
        await alice.close()
        await bob.close()

    (message,) = await asyncio.to_thread(search, path, "ship friday")
    thumbs = await asyncio.to_thread(search, path, "👍")
    rocket = await asyncio.to_thread(search, path, "🚀")
    assert [h["text"].split()[0] for h in thumbs] == ["took", "reacted"]
    assert [h["text"].split()[0] for h in rocket] == ["took", "reacted"]
    events = await asyncio.to_thread(export, path)
    reactions = [events[h["event_id"]] for h in thumbs + rocket]
    assert {r["target"] for r in reactions} == {message["event_id"]}
    assert sorted((r["key"], r["removed"]) for r in reactions) == [
        ("👍", False), ("👍", True), ("🚀", False), ("🚀", True)
    ]  # fmt: skip
    assert {r["origin"]["room"] for r in reactions} == {b}
    assert all(r["origin"]["sender"].endswith("/bob") for r in reactions)


async def test_xmpp_private_chat_is_archived_and_answered_once(
    prosody: Prosody, tmp_path: Path
) -> None:
    relay = await asyncio.to_thread(prosody.register)
    carol = await Person.login(prosody)
    a, b = prosody.room("a"), prosody.room("b")
    try:
        await carol.join(a, "carol")
        await carol.join(b, "carol")
        async with archiving_bridge(tmp_path, client_network(prosody, relay), [a, b]) as (
            path,
            daemon,
        ):
            relay_jid = relay[0]
            carol.chat(relay_jid, "hi relay, please pass this on to the ops room")
            await eventually(lambda: carol.answers(relay_jid), timeout=15,
                             what="the automatic answer")  # fmt: skip
            assert carol.answers(relay_jid) == [ARCHIVED_REPLY]

            relay_path, outbox = daemon.relay, daemon.outbox
            assert relay_path is not None
            assert outbox is not None
            before = relay_path.archived
            carol.chat(relay_jid, "second private line")
            await eventually(lambda: relay_path.archived > before, what="second line archived")
            assert await outbox.wait_idle(10)  # an answer, if queued, is sent by now
            # The sentinel's relayed copy comes down the same stream after any answer.
            carol.say(a, "sentinel")
            await eventually(lambda: any("sentinel" in m for m in carol.bodies(b)),
                             timeout=15, what="sentinel relayed")  # fmt: skip
            assert carol.answers(relay_jid) == [ARCHIVED_REPLY]
            assert not any("pass this on" in t or "private line" in t for t in carol.bodies(b))
    finally:
        await carol.close()

    (hit,) = await asyncio.to_thread(search, path, "pass this on")
    assert hit["sender"] == carol.client.boundjid.bare
    assert hit["room"] == carol.client.boundjid.full  # where the answer went
    assert [(o["action"], o["rule"]) for o in hit["outcomes"] if o["kind"] == "decision"] == [
        ("ignored", "direct-message")
    ]
    assert len(await asyncio.to_thread(search, path, "second private line")) == 1


async def test_xmpp_private_message_through_a_room_is_answered_at_the_occupant(
    prosody: Prosody, tmp_path: Path
) -> None:
    relay = await asyncio.to_thread(prosody.register)
    dave = await Person.login(prosody)
    a, b = prosody.room("a"), prosody.room("b")
    try:
        await dave.join(a, "dave")
        async with archiving_bridge(tmp_path, client_network(prosody, relay), [a, b]) as (
            path,
            _,
        ):
            dave.chat(f"{a}/relay", "a word in private, relay")
            await eventually(lambda: dave.answers(f"{a}/relay"), timeout=15,
                             what="the answer through the room")  # fmt: skip
            assert dave.answers(f"{a}/relay") == [ARCHIVED_REPLY]
    finally:
        await dave.close()

    (hit,) = await asyncio.to_thread(search, path, "word in private")
    assert (hit["room"], hit["sender"]) == (f"{a}/dave", f"{a}/dave")
    assert [(o["action"], o["rule"]) for o in hit["outcomes"] if o["kind"] == "decision"] == [
        ("ignored", "direct-message")
    ]


async def test_xmpp_component_takes_chat_messages_to_its_own_jid(
    prosody: Prosody, tmp_path: Path
) -> None:
    erin = await Person.login(prosody)
    rooms = [prosody.room("component"), prosody.room("component")]
    try:
        async with archiving_bridge(tmp_path, component_network(prosody), rooms) as (path, _):
            erin.chat(prosody.component_domain, "does the bridge read this?")
            await eventually(lambda: erin.answers(prosody.component_domain), timeout=15,
                             what="the component's answer")  # fmt: skip
            assert erin.answers(prosody.component_domain) == [ARCHIVED_REPLY]
    finally:
        await erin.close()

    (hit,) = await asyncio.to_thread(search, path, "bridge read this")
    assert hit["sender"] == erin.client.boundjid.bare
    assert [(o["action"], o["rule"]) for o in hit["outcomes"] if o["kind"] == "decision"] == [
        ("ignored", "direct-message")
    ]
