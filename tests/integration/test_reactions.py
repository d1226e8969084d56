"""Reactions across Matrix, XMPP and IRC through the whole daemon, each side watched by
an ordinary client of its own network: Matrix `m.reaction` (and its redaction), XMPP
XEP-0444 on the relayed stanza, IRC one gathered line (ngircd passes no client tags) or
a `+draft/react` TAGMSG (InspIRCd)."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nio
import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

NS_REACTIONS = "urn:xmpp:reactions:0"
NS_SID = "urn:xmpp:sid:0"
FIVE = ("🎉", "🚀", "❤️", "👀", "🙏")


class Reactions:
    """What an XMPP user's client shows of XEP-0444: each update, as (message id, keys),
    in the order the room sent them."""

    def __init__(self, user: XmppUser) -> None:
        self.user = user
        self.seen: list[tuple[str, tuple[str, ...]]] = []
        user.client.register_plugin("xep_0444")
        user.client.add_event_handler("reactions", self._keep)

    def _keep(self, msg: Any) -> None:
        held = msg.xml.find(f"{{{NS_REACTIONS}}}reactions")
        if held is not None:
            keys = tuple(r.text or "" for r in held.findall(f"{{{NS_REACTIONS}}}reaction"))
            self.seen.append((held.get("id") or "", keys))

    def current(self, message_id: str) -> tuple[str, ...] | None:
        """The relay's set on `message_id` as the last update said; None before any."""
        sets = [keys for mid, keys in self.seen if mid == message_id]
        return sets[-1] if sets else None

    def react(self, room: str, message_id: str, keys: tuple[str, ...]) -> None:
        msg = self.user.client.make_message(mto=room, mtype="groupchat")
        held = ET.SubElement(msg.xml, f"{{{NS_REACTIONS}}}reactions", {"id": message_id})
        for key in keys:
            ET.SubElement(held, f"{{{NS_REACTIONS}}}reaction").text = key
        msg.send()


def stanza_id(user: XmppUser, room: str, body: str) -> str:
    """The room's stanza-id of the message with `body`, as this user received it."""
    for element in user.messages:
        if element.findtext("{jabber:client}body") == body:
            sid = element.find(f"{{{NS_SID}}}stanza-id")
            if sid is not None and sid.get("by") == room:
                return str(sid.get("id"))
    raise AssertionError(f"no stanza-id for {body!r}")


def reactions_by(watcher: Watcher, room: str, sender: str) -> list[dict[str, Any]]:
    return [
        e for e in watcher.events.get(room, [])
        if e.get("type") == "m.reaction" and e["sender"] == sender
    ]  # fmt: skip


def redacted(watcher: Watcher, room: str, sender: str) -> list[str]:
    """Event ids `sender` redacted in `room` (room v11+ names them in the content)."""
    return [
        str(e.get("redacts") or e["content"].get("redacts"))
        for e in watcher.events.get(room, [])
        if e.get("type") == "m.room.redaction" and e["sender"] == sender
    ]


async def react(watcher: Watcher, room: str, target: str, key: str) -> str:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}
    resp = await watcher.client.room_send(room, "m.reaction", content)
    assert isinstance(resp, nio.RoomSendResponse), resp
    return str(resp.event_id)


def config(tmp_path: Path, synapse: SynapseServer, relay_mx: MatrixUser, rooms: list[Any],
           networks: dict[str, Any]) -> Any:  # fmt: skip
    return parse_config(json.dumps({
        "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"}},
        "networks": {
            "mx": {"type": "matrix", "homeserver": synapse.url, "user_id": relay_mx.user_id,
                   "access_token": relay_mx.access_token, "sync_timeout_ms": 1000},
            **networks,
        },
        "gateways": {"g": {"rooms": rooms}},
        "policy": {"rules": [{"name": "no-eggplant", "action": "deny", "text": "🍆"}]},
        "archive": {"enabled": False},
    }, ensure_ascii=False))  # fmt: skip


@asynccontextmanager
async def xmpp_user(prosody: Prosody, muc: str, nick: str) -> AsyncIterator[XmppUser]:
    user = await XmppUser.login(prosody)
    try:
        await user.join(muc, nick)
        yield user
    finally:
        await user.close()


async def test_matrix_reaction_reaches_xmpp_as_xep_0444_and_irc_as_one_line(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc, chan = prosody.room("rx"), ngircd.channel("rx")
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
        async with (
            xmpp_user(prosody, muc, "xavier") as xavier,
            Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice,
        ):
            shown = Reactions(xavier)
            room = await alice.create_room(invite=[relay_mx.user_id])
            xm = {"type": "xmpp", "jid": relay_jid, "password": relay_pw, "host": prosody.host,
                  "port": prosody.port, "tls": "plain", "nick": "relay"}  # fmt: skip
            rooms = [{"network": "mx", "room": room}, {"network": "xm", "room": muc},
                     {"network": "irc", "room": chan}]  # fmt: skip
            cfg = config(tmp_path, synapse, relay_mx, rooms, {"xm": xm, "irc": ngircd.network()})
            async with Daemon(cfg) as daemon:
                assert await daemon.ready(30)
                name = alice.user.user_id[1:].split(":")[0]
                first = await alice.text(room, "ship it today")
                line = f"<{name}@mx> ship it today"
                await wait_for(lambda: line in xavier.bodies(muc), what="message on XMPP")
                await wait_for(lambda: line in ivan.texts(chan), what="message on IRC")
                copy = stanza_id(xavier, muc, line)

                thumbs = await react(alice, room, first, "👍")
                await wait_for(lambda: shown.current(copy) == ("👍",), what="👍 on XMPP")
                said = f'* {name} reacted 👍 to "ship it today"'
                await wait_for(lambda: said in ivan.texts(chan), what="👍 line on IRC")

                await alice.client.room_redact(room, thumbs)
                await wait_for(lambda: shown.current(copy) == (), what="👍 gone on XMPP")

                second = await alice.text(room, "second thoughts")
                await wait_for(
                    lambda: f"<{name}@mx> second thoughts" in ivan.texts(chan), what="2nd on IRC"
                )
                for key in FIVE:
                    await react(alice, room, second, key)
                await alice.text(room, "sentinel")
                await wait_for(
                    lambda: f"<{name}@mx> sentinel" in ivan.texts(chan), what="sentinel on IRC"
                )
                copy2 = stanza_id(xavier, muc, f"<{name}@mx> second thoughts")
                await wait_for(lambda: shown.current(copy2) == FIVE, what="five on XMPP")
        lines = [t for t in ivan.texts(chan) if " reacted " in t]
        assert lines == [said, f'* {name} reacted {", ".join(FIVE)} to "second thoughts"']
        assert not any("took" in t or "removed" in t for t in ivan.texts(chan))
    finally:
        await ivan.close()


async def test_xmpp_reaction_reaches_matrix_on_the_copy_and_a_denied_key_does_not(
    synapse: SynapseServer, prosody: Prosody, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc = prosody.room("rxm")
    async with (
        xmpp_user(prosody, muc, "xavier") as xavier,
        Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice,
    ):
        reacting = Reactions(xavier)
        room = await alice.create_room(invite=[relay_mx.user_id])
        xm = {"type": "xmpp", "jid": relay_jid, "password": relay_pw, "host": prosody.host,
              "port": prosody.port, "tls": "plain", "nick": "relay"}  # fmt: skip
        rooms = [{"network": "mx", "room": room}, {"network": "xm", "room": muc}]
        cfg = config(tmp_path, synapse, relay_mx, rooms, {"xm": xm})
        async with Daemon(cfg) as daemon:
            assert await daemon.ready(30)
            xavier.say(muc, "hello matrix")
            got = await wait_for(
                lambda: alice.messages(room, sender=relay_mx.user_id), what="XMPP -> Matrix"
            )
            copy = got[0]["event_id"]
            await wait_for(lambda: "hello matrix" in xavier.bodies(muc), what="reflection")
            original = stanza_id(xavier, muc, "hello matrix")
            reacting.react(muc, original, ("🍆",))
            reacting.react(muc, original, ("🍆", "👍"))  # XEP-0444: the whole set each time
            seen = await wait_for(
                lambda: reactions_by(alice, room, relay_mx.user_id), what="👍 on Matrix"
            )
            assert [e["content"]["m.relates_to"] for e in seen] == [
                {"rel_type": "m.annotation", "event_id": copy, "key": "👍"}
            ]
        # Taken back after a restart: the annotation to redact is remembered.
        async with Daemon(cfg) as daemon:
            assert await daemon.ready(30)
            reacting.react(muc, original, ("🍆",))
            await wait_for(
                lambda: redacted(alice, room, relay_mx.user_id) == [seen[0]["event_id"]],
                what="👍 redacted on Matrix",
            )


async def test_matrix_reaction_reaches_irc_as_a_react_tag_where_the_server_takes_tags(
    synapse: SynapseServer, inspircd: Ircd, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    chan = inspircd.channel("rxt")
    ivan = await IrcUser.connect(inspircd, "ivan")
    acked: list[str] = []
    tagged: list[dict[str, str]] = []
    ivan.conn.add_global_handler("cap", lambda _c, e: acked.extend(e.arguments[1:]))
    ivan.conn.add_global_handler(
        "tagmsg", lambda _c, e: tagged.append({t["key"]: t["value"] or "" for t in e.tags})
    )
    try:
        ivan.raw("CAP REQ :message-tags")
        await wait_for(lambda: any("message-tags" in a for a in acked), what="CAP ACK")
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            rooms = [{"network": "mx", "room": room}, {"network": "irc", "room": chan}]
            cfg = config(tmp_path, synapse, relay_mx, rooms, {"irc": inspircd.network()})
            async with Daemon(cfg) as daemon:
                assert await daemon.ready(30)
                first = await alice.text(room, "tagged")
                (seen,) = await wait_for(lambda: ivan.messages(chan), what="message on IRC")
                msgid = seen.tags.get("msgid")
                assert msgid
                await react(alice, room, first, "👍")
                (tags,) = await wait_for(lambda: tagged, what="TAGMSG on IRC")
        assert (tags["+draft/react"], tags["+draft/reply"]) == ("👍", msgid)
        assert not [t for t in ivan.texts(chan) if " reacted " in t]
    finally:
        await ivan.close()


async def test_matrix_reaction_to_an_irc_line_reaches_irc_where_lines_have_no_msgid(
    synapse: SynapseServer, ngircd: Ircd, tmp_path: Path
) -> None:
    """ngircd gives lines no msgid, so the id map knows no IRC id for what IRC users
    say; a reaction to it is still shown to them."""
    relay_mx = synapse.register()
    chan = ngircd.channel("rxi")
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            rooms = [{"network": "mx", "room": room}, {"network": "irc", "room": chan}]
            cfg = config(tmp_path, synapse, relay_mx, rooms, {"irc": ngircd.network()})
            async with Daemon(cfg) as daemon:
                assert await daemon.ready(30)
                name = alice.user.user_id[1:].split(":")[0]
                ivan.say(chan, "from irc with love")
                (copy,) = await wait_for(
                    lambda: alice.messages(room, sender=relay_mx.user_id), what="IRC -> Matrix"
                )
                await react(alice, room, copy["event_id"], "❤️")
                said = f'* {name} reacted ❤️ to "from irc with love"'
                await wait_for(lambda: said in ivan.texts(chan), what="❤️ line on IRC")
    finally:
        await ivan.close()


async def test_reactions_waiting_in_the_irc_window_are_not_lost_to_a_restart(
    synapse: SynapseServer, ngircd: Ircd, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    chan = ngircd.channel("rxr")
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            rooms = [{"network": "mx", "room": room}, {"network": "irc", "room": chan}]
            slow = ngircd.network(reaction_window=600)
            async with Daemon(config(tmp_path, synapse, relay_mx, rooms, {"irc": slow})) as d:
                assert await d.ready(30)
                name = alice.user.user_id[1:].split(":")[0]
                first = await alice.text(room, "before the restart")
                await wait_for(lambda: ivan.texts(chan), what="message on IRC")
                await react(alice, room, first, "👍")
                await react(alice, room, first, "🎉")
                await wait_for(lambda: d.outbox and d.outbox.depth("irc") == 2, what="queued")
            # Stopped with both in an open window: nothing was said, nothing is lost.
            quick = ngircd.network(reaction_window=0.5)
            async with Daemon(config(tmp_path, synapse, relay_mx, rooms, {"irc": quick})) as d:
                assert await d.ready(30)
                said = f'* {name} reacted 👍, 🎉 to "before the restart"'
                await wait_for(lambda: said in ivan.texts(chan), what="line after restart")
        assert [t for t in ivan.texts(chan) if " reacted " in t] == [said]
    finally:
        await ivan.close()
