"""Mentions that ping the right person and threads that stay threads, through the whole
daemon between Synapse, ngircd and Prosody, each side watched by an ordinary client."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.render import NOPING
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


def highlights(line: str, nick: str) -> bool:
    """Whether an IRC client would highlight `nick` in `line`: the nick as a whole word,
    in any case (what irssi, WeeChat and HexChat do by default)."""
    return re.search(rf"(?<![\w\[\]\\`^{{}}|-]){re.escape(nick)}(?![\w\[\]\\`^{{}}|-])", line,
                     re.IGNORECASE) is not None  # fmt: skip


def ending(user: XmppUser, suffix: str) -> list[Any]:
    """The messages `user` saw whose body ends with `suffix`."""
    return [m for m in user.messages
            if (m.findtext("{jabber:client}body") or "").endswith(suffix)]  # fmt: skip


def matrix(synapse: SynapseServer, relay: MatrixUser) -> dict[str, Any]:
    return {"type": "matrix", "homeserver": synapse.url, "user_id": relay.user_id,
            "access_token": relay.access_token, "sync_timeout_ms": 1000}  # fmt: skip


def config(state: Path, networks: dict[str, Any], rooms: list[tuple[str, str]]) -> Any:
    return parse_config(json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning"}},
        "networks": networks,
        "gateways": {"g": {"nick_format": "<{nick_noping}@{network}> ",
                           "rooms": [{"network": n, "room": r} for n, r in rooms]}},
        "archive": {"enabled": False},
    }))  # fmt: skip


async def test_mentions_ping_across_matrix_and_irc_and_a_relayed_namesake_does_not(
    synapse: SynapseServer, ngircd: Ircd, tmp_path: Path
) -> None:
    relay = synapse.register()
    chan = ngircd.channel("mention")
    dave = await IrcUser.connect(ngircd, "dave")
    try:
        await dave.join(chan)
        async with (
            Watcher(synapse, synapse.register("alice" + relay.user_id[2:8])) as alice,
            Watcher(synapse, synapse.register()) as namesake,
        ):
            # A Matrix user who goes by the IRC user's nick.
            await namesake.client.set_displayname(dave.nick)
            room = await alice.create_room(invite=[relay.user_id, namesake.user.user_id])
            await namesake.join(room)
            networks = {"mx": matrix(synapse, relay), "irc": ngircd.network()}
            async with Daemon(config(tmp_path, networks, [("mx", room), ("irc", chan)])) as d:
                assert await d.ready(30)
                # Alice pills the IRC user (as a ghost would be pilled): IRC gets the nick.
                await alice.text(
                    room, "Dave (IRC): ready?", format="org.matrix.custom.html",
                    formatted_body=f'<a href="https://matrix.to/#/@irc_{dave.nick}:localhost">'
                                   "Dave (IRC)</a>: ready?",
                    **{"m.mentions": {"user_ids": [f"@irc_{dave.nick}:localhost"]}},
                )  # fmt: skip
                # The namesake speaks: the prefix shows the nick but highlights nobody.
                await namesake.text(room, "hello from matrix")
                lines = await wait_for(lambda: [s.text for s in dave.messages(chan)][1:] and
                                       [s.text for s in dave.messages(chan)],
                                       what="both lines on IRC")  # fmt: skip
                pill, relayed = lines[:2]
                name = alice.user.user_id[1:].split(":")[0]
                assert pill.replace(NOPING, "") == f"<{name}@mx> {dave.nick}: ready?"
                assert highlights(pill, dave.nick)
                assert "matrix.to" not in pill
                assert relayed.replace(NOPING, "") == f"<{dave.nick}@mx> hello from matrix"
                assert not highlights(relayed, dave.nick)

                # Dave answers Alice by name: on Matrix that is a pill and m.mentions.
                dave.say(chan, f"{name}: yes, ready")
                got = await wait_for(lambda: alice.messages(room, sender=relay.user_id),
                                     what="IRC -> Matrix")  # fmt: skip
                content = got[0]["content"]
                assert content["m.mentions"] == {"user_ids": [alice.user.user_id]}
                assert (
                    f'href="https://matrix.to/#/{alice.user.user_id}"'
                    in (content["formatted_body"])
                )
                # The relayed sender prefix pinged nobody, though a member has that name.
                assert namesake.user.user_id not in content["m.mentions"]["user_ids"]
    finally:
        await dave.close()


async def test_a_matrix_thread_stays_one_thread_on_xmpp_and_back_and_is_named_on_irc(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    relay = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc = prosody.room("thread")
    chan = ngircd.channel("thread")
    xavier = await XmppUser.login(prosody)
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await xavier.join(muc, "xavier")
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[relay.user_id])
            networks = {
                "mx": matrix(synapse, relay),
                "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                       "host": prosody.host, "port": prosody.port, "tls": "plain",
                       "nick": "relay"},
                "irc": ngircd.network(),
            }  # fmt: skip
            rooms = [("mx", room), ("xm", muc), ("irc", chan)]
            async with Daemon(config(tmp_path, networks, rooms)) as d:
                assert await d.ready(30)
                root = await alice.text(room, "Where do we meet tomorrow?")

                (root_copy,) = await wait_for(lambda: ending(xavier, "?"), what="root on XMPP")
                sid = next(s.get("id") for s in root_copy.findall("{urn:xmpp:sid:0}stanza-id")
                           if s.get("by") == muc)  # fmt: skip
                await alice.text(room, "in the lobby", **{"m.relates_to": {
                    "rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                    "m.in_reply_to": {"event_id": root}}})  # fmt: skip

                (reply,) = await wait_for(
                    lambda: ending(xavier, "lobby"), what="thread reply on XMPP"
                )
                assert reply.findtext("{jabber:client}thread") == sid

                # Xavier answers in that thread: on Matrix it is in the root's thread.
                msg = xavier.client.make_message(mto=muc, mbody="see you there",
                                                 mtype="groupchat")  # fmt: skip
                msg["thread"] = sid
                msg.send()
                got = await wait_for(lambda: [e for e in alice.messages(room, sender=relay.user_id)
                                              if "see you there" in e["content"]["body"]],
                                     what="XMPP thread reply on Matrix")  # fmt: skip
                relation = got[0]["content"]["m.relates_to"]
                assert (relation["rel_type"], relation["event_id"]) == ("m.thread", root)

                # IRC has no threads: the line names the thread it belongs to.
                lobby = await wait_for(lambda: [t for t in ivan.texts(chan) if "lobby" in t],
                                       what="thread reply on IRC")  # fmt: skip
                assert '[thread: "Where do we meet tomorrow?"] in the lobby' in lobby[0]

                # Ivan addresses Xavier from IRC: XMPP gets a XEP-0372 mention of him.
                ivan.say(chan, "xavier: see you at noon")

                (noon,) = await wait_for(lambda: ending(xavier, "noon"), what="IRC mention on XMPP")
                body = noon.findtext("{jabber:client}body") or ""
                refs = noon.findall("{urn:xmpp:reference:0}reference")
                assert [(r.get("type"), r.get("uri")) for r in refs] == [
                    ("mention", f"xmpp:{muc}/xavier")
                ]
                assert body[int(refs[0].get("begin", "")) : int(refs[0].get("end", ""))] == "xavier"
                assert not highlights(body.split(">")[0], ivan.nick)  # {nick_noping} on XMPP
    finally:
        await ivan.close()
        await xavier.close()
