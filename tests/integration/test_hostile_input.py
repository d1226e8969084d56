"""Hostile and malformed input thrown at the running bridge, one network at a time.

One gateway spans an ngircd channel, a Prosody MUC and a Synapse room, each watched by an
ordinary client of its own network. A hostile user on one network sends what that
protocol lets through (samples in `tests/data/hostile/`, plus an oversized message and a
display name made of control, bidi and zero-width characters); then a good message.
The promise (design.md, "What bad input gets"): the daemon keeps every connection, the
far sides see only sanitised text and markup (no control character, no bidi override in a
sender's name, no script, no command smuggled into IRC), what must be dropped is dropped,
and the next good message arrives as usual.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from string import Template

import nio
import pytest

from imbridge.adapters.xmpp import XmppAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.integration.hostile import (
    HOSTILE_NAME,
    XHTML_IM,
    RawIrc,
    Trio,
    assert_clean_prefix,
    assert_clean_text,
    assert_irc_lines_safe,
    assert_safe_html,
    assert_safe_xhtml,
    check_markers,
    irc_samples,
    json_samples,
    keep_raw,
)
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import SynapseServer, Watcher

pytestmark = pytest.mark.integration


@pytest.fixture
async def trio(
    ngircd: Ircd, prosody: Prosody, synapse: SynapseServer, tmp_path: Path
) -> AsyncIterator[Trio]:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    chan, victim, muc = ngircd.channel("hostile"), ngircd.channel("victim"), prosody.room("hostile")
    irc_nick, xmpp_nick = "relay" + secrets.token_hex(2), "relay" + secrets.token_hex(2)
    ivan = await IrcUser.connect(ngircd, "ivan")
    xavier = await XmppUser.login(prosody)
    try:
        await ivan.join(chan)
        await ivan.join(victim)  # a command smuggled into IRC could post here
        await xavier.join(muc, "xavier")
        alice_user = synapse.register("alice" + secrets.token_hex(3))
        async with Watcher(synapse, alice_user) as alice:
            # Anyone may set the topic and state: the hostile user needs no rights.
            room = await alice.create_room(
                invite=[relay_mx.user_id],
                power_level_override={"state_default": 0, "events": {}},
            )
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
                "networks": {
                    "irc": ngircd.network(nick=irc_nick),
                    "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                           "host": prosody.host, "port": prosody.port, "tls": "plain",
                           "nick": xmpp_nick},
                    "mx": {"type": "matrix", "homeserver": synapse.url,
                           "user_id": relay_mx.user_id, "access_token": relay_mx.access_token,
                           "sync_timeout_ms": 1000},
                },
                "gateways": {"g": {"nick_format": "<{nick}@{network}> ", "rooms": [
                    {"network": "irc", "room": chan}, {"network": "xm", "room": muc},
                    {"network": "mx", "room": room}]}},
                "archive": {"retention_days": 30},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(60)
                trio = Trio(daemon, ngircd, prosody, synapse, chan, victim, muc, room, ivan,
                            xavier, alice, relay_mx, irc_nick, xmpp_nick)  # fmt: skip
                xm = daemon.adapters["xm"]
                assert isinstance(xm, XmppAdapter)
                trio.xmpp_generation = xm._session.generation
                keep_raw(trio)
                yield trio
    finally:
        await xavier.close()
        await ivan.close()


# --- IRC ---------------------------------------------------------------------------------


async def test_hostile_irc_bytes_reach_xmpp_and_matrix_sanitised_and_bridge_carries_on(
    trio: Trio,
) -> None:
    samples = irc_samples()
    nick = "mal" + secrets.token_hex(2)
    mallory = await RawIrc.connect(trio.ngircd, nick)
    try:
        chan = trio.chan.encode()
        mallory.send(b"JOIN " + chan)
        mallory.send(b"PRIVMSG " + chan + b" :warmup")
        await trio.reached("warmup", irc=False)
        far = trio.far()
        for s in samples:
            mallory.send(b"PRIVMSG " + chan + b" :" + s.payload)
        # The longest line the server takes, in 2-byte characters: relaying it with
        # Mallory's prefix, ngircd cuts it at 512 bytes, inside a character. Then a NOTICE
        # and a TOPIC with hostile text.
        head = b"PRIVMSG " + chan + b" :m20 "
        mallory.send(head + "é".encode() * ((510 - len(head)) // 2))
        mallory.send(b"NOTICE " + chan + b" :m21 notice \x1b[2J\xe2\x80\xae end21")
        mallory.send(b"TOPIC " + chan + b" :m22 topic \x1b]0;t\x07\xff\xe2\x80\xae end22")
        mallory.send(b"PRIVMSG " + chan + b" :good after bad")
        await trio.reached("good after bad", irc=False, far=far)
    finally:
        await mallory.close()

    for texts, where in ((far.xmpp_bodies(), "XMPP"), (far.matrix_bodies(), "Matrix")):
        for text in texts:
            assert_clean_text(text)
            assert_clean_prefix(text, nick, "irc")
        check_markers(texts, samples, where)
        for word in ("m20", "m21", "end21", "m22", "end22"):
            assert any(word in t for t in texts), f"{word} never reached {where}"
        # Only the relayed samples, the three extra lines and the good one: nothing else.
        relayed = sum(s.expect == "relayed" for s in samples)
        assert len(texts) == relayed + 4, texts
        assert texts[-1] == f"<{nick}@irc> good after bad"
        long = next(t for t in texts if "m20" in t)
        assert "\u00e9" * 200 in long, long  # UTF-8 up to the server's cut,
        assert "\u00c3" not in long, long  # not CP1252 mojibake
    invalid = next(t for t in far.matrix_bodies() if "m01" in t)
    assert "\ufffd" in invalid or "\u00ff" in invalid  # undecodable bytes shown, not lost
    for event in far.matrix():
        if "formatted_body" in event["content"]:
            assert_safe_html(event["content"]["formatted_body"])
    for msg in far.xmpp():
        if (html := msg.find(XHTML_IM)) is not None:
            assert_safe_xhtml(html)
    assert not far.irc(), "echoed back into IRC"
    trio.assert_connections_kept()


# --- XMPP --------------------------------------------------------------------------------


async def test_hostile_xmpp_stanzas_reach_irc_and_matrix_sanitised_and_bridge_carries_on(
    trio: Trio,
) -> None:
    samples = json_samples("xmpp-stanzas.json", "stanzas")
    mallory = await XmppUser.login(trio.prosody)
    # Prosody refuses a MUC nick with a bidi or control character (jid-malformed) and
    # maps zero-width ones away; what it lets through must still read as one clean name.
    nick = "mal\u00a0\u200bx\u034f"
    clean = "mal x"
    try:
        mallory.client.send_raw(
            f"<presence to='{trio.muc}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        mallory.say(trio.muc, "warmup")
        await trio.reached("warmup", xmpp=False)
        far = trio.far()
        values = {"room": trio.muc, "relay": f"{trio.muc}/{trio.xmpp_nick}",
                  "victim": trio.victim}  # fmt: skip
        for s in samples:
            mallory.client.send_raw(Template(s.payload["xml"]).substitute(values))
        # Oversized: 200 000 characters, under Prosody's 256 KiB stanza limit.
        mallory.say(trio.muc, "x20 " + "0123456789" * 20_000 + " end20")
        mallory.say(trio.muc, "good after bad")
        await trio.reached("good after bad", xmpp=False, far=far)
    finally:
        await mallory.close()

    irc = far.irc()
    assert_irc_lines_safe(trio, far)
    assert irc[-1] == f"<{clean}@xm> good after bad"
    assert irc[0].startswith(f"<{clean}@xm> ")
    check_markers(irc, samples, "IRC")
    assert "x20" in "".join(irc)
    bodies = far.matrix_bodies()
    for text in bodies:
        assert_clean_text(text)
        assert_clean_prefix(text, clean, "xm")
    check_markers(bodies, samples, "Matrix")
    relayed = sum(s.expect == "relayed" for s in samples)
    assert len(bodies) == relayed + 2, bodies
    assert bodies[-1] == f"<{clean}@xm> good after bad"
    big = next(b for b in bodies if "x20" in b)
    assert 20_000 < len(big.encode()) <= 64 * 1024  # cut to fit a Matrix event, not lost
    for event in far.matrix():
        if "formatted_body" in event["content"]:
            assert_safe_html(event["content"]["formatted_body"])
    assert not far.xmpp(), "echoed back into XMPP"
    trio.assert_connections_kept()


# --- Matrix ------------------------------------------------------------------------------


async def test_hostile_matrix_events_reach_irc_and_xmpp_sanitised_and_bridge_carries_on(
    trio: Trio,
) -> None:
    samples = json_samples("matrix-events.json", "events")
    mallory_user = trio.synapse.register("mal" + secrets.token_hex(3))
    invited = await trio.alice.client.room_invite(trio.room, mallory_user.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    async with Watcher(trio.synapse, mallory_user) as mallory:
        await mallory.join(trio.room)
        resp = await mallory.client.set_displayname(HOSTILE_NAME)
        assert isinstance(resp, nio.ProfileSetDisplayNameResponse), resp
        warmup = await mallory.text(trio.room, "warmup")
        await trio.reached("warmup", matrix=False)
        far = trio.far()
        for s in samples:
            text = json.dumps(s.payload["content"])
            text = text.replace("$victim", trio.victim).replace("$warmup", warmup)
            content = json.loads(text)
            if "state_key" in s.payload:
                put = await mallory.client.room_put_state(
                    trio.room, s.payload["type"], content, state_key=s.payload["state_key"]
                )
                assert isinstance(put, nio.RoomPutStateResponse), (put.message, s.payload)
            else:
                sent = await mallory.client.room_send(
                    trio.room, s.payload.get("type", "m.room.message"), content
                )
                assert isinstance(sent, nio.RoomSendResponse), (sent.message, s.payload)
        # Oversized: 60 000 bytes, near the 64 KiB a Matrix event may take.
        await mallory.text(trio.room, "y20 " + "0123456789" * 6_000 + " end20")
        await mallory.text(trio.room, "good after bad")
        await trio.reached("good after bad", matrix=False, far=far)

    clean = "malexe.txt [31mred" + "x" * (64 - len("malexe.txt [31mred"))
    irc = far.irc()
    assert_irc_lines_safe(trio, far)
    assert irc[-1] == f"<{clean}@mx> good after bad"
    check_markers(irc, samples, "IRC")
    assert any("y20" in t for t in irc)
    bodies = far.xmpp_bodies()
    for text in bodies:
        assert_clean_text(text)
        assert_clean_prefix(text, clean, "mx")
    check_markers(bodies, samples, "XMPP")
    relayed = sum(s.expect == "relayed" for s in samples)
    assert len(bodies) == relayed + 2, bodies
    assert bodies[-1] == f"<{clean}@mx> good after bad"
    for msg in far.xmpp():
        if (html := msg.find(XHTML_IM)) is not None:
            assert_safe_xhtml(html)
    assert not far.matrix(), "echoed back into Matrix"
    trio.assert_connections_kept()
