"""Matrix in appservice mode against real Synapse, started with the registration the
bridge prints: remote senders speak as ghosts of their own, and the transactions the
homeserver pushes are checked and applied exactly once."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest

from imbridge import testing
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.integration.fault_helpers import BridgeProcess, exactly_once_in_order, matrix_bodies
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import Appservice, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

REPLY = "urn:xmpp:reply:0"  # XEP-0461
SID = "urn:xmpp:sid:0"  # XEP-0359
PUSHED = 30.0
"""Seconds to wait for what the homeserver pushes: a push that failed while no bridge
listened (between tests) is retried by Synapse after 2 s, 4 s, ... and the bridge's
start-up pings cut that short only once Synapse has noticed the failure."""


def _config(setup: Appservice, ngircd: Ircd, room: str, chan: str, state: Path) -> str:
    return json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning"},
                   "http": {"listen": setup.listen}},
        "networks": {"mx": setup.network(), "irc": ngircd.network()},
        "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                     {"network": "irc", "room": chan}]}},
        "archive": {"enabled": False},
    })  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scene:
    daemon: Daemon
    alice: Watcher
    ivan: IrcUser
    room: str
    chan: str


@asynccontextmanager
async def _bridged(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path, tag: str
) -> AsyncIterator[Scene]:
    synapse, setup = synapse_appservice
    chan = ngircd.channel(tag)
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[setup.bot])
            config = parse_config(_config(setup, ngircd, room, chan, tmp_path))
            async with Daemon(config) as daemon:
                assert await daemon.ready(30)
                # The bridge relays what follows its own join, which the homeserver
                # pushes to it: one message through first says it has arrived.
                await alice.text(room, "warm-up")
                await wait_for(lambda: ivan.messages(chan), what="warm-up -> IRC", timeout=PUSHED)
                ivan.seen.clear()
                yield Scene(daemon, alice, ivan, room, chan)
    finally:
        await ivan.close()


async def test_irc_message_arrives_on_matrix_from_its_ghost_named_after_the_nick(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "asghost") as scene:
        alice, ivan, room, chan = scene.alice, scene.ivan, scene.room, scene.chan
        ghost = setup.ghost("irc", ivan.nick)
        ivan.say(chan, "hello from irc")
        got = await wait_for(lambda: alice.messages(room, sender=ghost), what="IRC -> ghost")
        assert got[0]["content"]["body"] == "hello from irc"  # no <nick@irc> prefix
        profile = alice.server.api("GET", f"/_matrix/client/v3/profile/{ghost}",
                                   token=alice.user.access_token)  # fmt: skip
        assert profile["displayname"] == ivan.nick
        # The Matrix side still reaches IRC as before, named after its sender.
        await alice.text(room, "hi ivan")
        seen = await wait_for(lambda: ivan.messages(chan), what="Matrix -> IRC", timeout=PUSHED)
        assert seen[0].text.endswith("> hi ivan")
        # A Matrix reply to the ghost's message reaches IRC as a reply to ivan's line.
        reply_to = {"m.in_reply_to": {"event_id": got[0]["event_id"]}}
        await alice.send(room, {"msgtype": "m.text", "m.relates_to": reply_to,
                                "body": "> <x> hello from irc\n\nwelcome"})  # fmt: skip
        lines = await wait_for(lambda: ivan.messages(chan)[1:], what="reply -> IRC", timeout=PUSHED)
        assert lines[0].text.endswith(f'(re {ivan.nick}: "hello from irc") welcome')


async def _push(
    setup: Appservice, txn: str, events: list[dict[str, Any]], token: str | None
) -> int:
    url = f"http://{setup.listen}/networks/mx/_matrix/app/v1/transactions/{txn}"
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = io.BytesIO(json.dumps({"events": events}).encode())
    async with aiohttp.ClientSession() as http, http.put(url, data=body, headers=headers) as resp:
        return resp.status


def _event(room: str, sender: str, body: str) -> dict[str, Any]:
    return {
        "type": "m.room.message", "room_id": room, "sender": sender,
        "event_id": f"$test{secrets.token_hex(8)}",
        "origin_server_ts": int(time.time() * 1000),
        "content": {"msgtype": "m.text", "body": body},
    }  # fmt: skip


async def test_a_transaction_with_a_wrong_hs_token_is_refused_and_changes_nothing(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "astoken") as scene:
        alice, ivan, room, chan = scene.alice, scene.ivan, scene.room, scene.chan
        sender = alice.user.user_id
        assert await _push(setup, "t1", [_event(room, sender, "forged")], "wrong") == 403
        assert await _push(setup, "t2", [_event(room, sender, "forged too")], None) == 401
        # Nor does a refused id count as seen: the real one with that id is applied.
        assert await _push(setup, "t1", [_event(room, sender, "sentinel")], setup.hs_token) == 200
        seen = await wait_for(lambda: ivan.messages(chan), what="sentinel -> IRC")
        assert [s.text.split("> ", 1)[1] for s in seen] == ["sentinel"]


async def test_a_retried_transaction_is_applied_once(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "asretry") as scene:
        alice, ivan, room, chan = scene.alice, scene.ivan, scene.room, scene.chan
        sender = alice.user.user_id
        first = [_event(room, sender, "once"), _event(room, sender, "twice?")]
        txn = f"r{secrets.token_hex(4)}"
        assert await _push(setup, txn, first, setup.hs_token) == 200
        assert await _push(setup, txn, first, setup.hs_token) == 200
        # The same events in a new transaction (a homeserver that lost its record of
        # sending them): recognised by their event ids.
        assert await _push(setup, txn + "b", first, setup.hs_token) == 200
        last = [_event(room, sender, "sentinel")]
        assert await _push(setup, txn + "c", last, setup.hs_token) == 200
        seen = await wait_for(lambda: ivan.messages(chan)[2:], what="sentinel -> IRC")
        texts = [s.text.split("> ", 1)[1] for s in ivan.messages(chan)]
        assert texts == ["once", "twice?", "sentinel"], seen


async def test_sigkill_during_a_stream_of_irc_messages_into_matrix_posts_each_once(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    """The bridge process is killed while ghosts post 200 IRC lines; after a restart
    every line is in the room once, in order: what was queued survives on disk, and the
    send that was in flight is repeated with its transaction id, which Synapse knows."""
    synapse, setup = synapse_appservice
    chan = ngircd.channel("askill")
    ivan = await IrcUser.connect(ngircd, "ivan")
    bridge = BridgeProcess(tmp_path / "bridge.yaml", tmp_path / "bridge.log")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[setup.bot])
            config = json.loads(_config(setup, ngircd, room, chan, tmp_path / "state"))
            config["bridge"]["log"] = {"level": "info", "format": "json"}
            config["networks"]["mx"]["rate_limit"] = {"per_second": 20, "burst": 20}
            bridge.config.write_text(json.dumps(config))
            bridge.start()
            await bridge.ready()
            ghost = setup.ghost("irc", ivan.nick)
            for n in range(1, 201):
                ivan.say(chan, f"i{n}")
                await asyncio.sleep(0.002)  # pace: ngircd's flood control

            def posted() -> list[str]:
                return matrix_bodies(synapse, alice.user.access_token, room, ghost)

            await wait_for(lambda: len(posted()) >= 60, timeout=60, what="60 posted")
            bridge.kill()
            bridge.start()
            await bridge.ready(times=2)
            await wait_for(lambda: len(posted()) >= 200, timeout=60,
                           what="all 200 posted")  # fmt: skip
            got = [int(b[1:]) for b in posted() if b.startswith("i")]
            assert exactly_once_in_order(got, list(range(1, 201))) == ""
    finally:
        bridge.terminate()
        await ivan.close()


async def test_xmpp_message_and_its_correction_come_from_one_ghost_named_after_the_nick(
    synapse_appservice: tuple[SynapseServer, Appservice], prosody: Prosody, tmp_path: Path
) -> None:
    synapse, setup = synapse_appservice
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc = prosody.room("asx")
    xavier = await XmppUser.login(prosody)
    try:
        await xavier.join(muc, "xavier")
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[setup.bot])
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"},
                           "http": {"listen": setup.listen}},
                "networks": {"mx": setup.network(),
                             "xm": testing.xmpp_network(prosody, relay_jid, relay_pw)},
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "xm", "room": muc}]}},
                "archive": {"enabled": False},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(30)

                def from_ghosts() -> list[dict[str, Any]]:
                    return [e for e in alice.messages(room)
                            if e["sender"].startswith("@_imb_xm_")]  # fmt: skip

                first = xavier.say(muc, "helo matrix")
                got = await wait_for(from_ghosts, what="XMPP -> ghost")
                assert got[0]["content"]["body"] == "helo matrix"
                ghost = got[0]["sender"]
                profile = synapse.api("GET", f"/_matrix/client/v3/profile/{ghost}",
                                      token=alice.user.access_token)  # fmt: skip
                assert profile["displayname"] == "xavier"
                xavier.say(muc, "hello matrix", replace=first)
                edits = await wait_for(lambda: from_ghosts()[1:], what="correction -> ghost")
                assert edits[0]["sender"] == ghost  # the ghost edits its own message
                assert edits[0]["content"]["m.new_content"]["body"] == "hello matrix"
                assert edits[0]["content"]["m.relates_to"] == {
                    "rel_type": "m.replace", "event_id": got[0]["event_id"]}  # fmt: skip
                # A Matrix reply to the ghost's message is a reply to xavier's on XMPP.
                reply_to = {"m.in_reply_to": {"event_id": got[0]["event_id"]}}
                await alice.send(room, {"msgtype": "m.text", "body": "welcome",
                                        "m.relates_to": reply_to})  # fmt: skip

                def replies() -> list[ET.Element]:
                    return [m for m in xavier.messages if m.find(f"{{{REPLY}}}reply") is not None]

                answer = (await wait_for(replies, what="reply -> XMPP", timeout=PUSHED))[0]
                assert (answer.findtext("{jabber:client}body") or "").endswith("welcome")
                own = [m for m in xavier.messages
                       if m.findtext("{jabber:client}body") == "helo matrix"]  # fmt: skip
                ids = {first, *(s.get("id") for m in own for s in m.iter(f"{{{SID}}}stanza-id"))}
                reply = answer.find(f"{{{REPLY}}}reply")
                assert reply is not None
                assert reply.get("id") in ids
    finally:
        await xavier.close()


async def test_the_homeserver_reaches_the_bridge_and_learns_which_users_are_ghosts(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    synapse, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "asping") as scene:
        # Synapse's own reachability check (Matrix 1.7), which pings the bridge.
        async def ping() -> dict[str, Any]:
            return await asyncio.to_thread(
                synapse.api, "POST", "/_matrix/client/v1/appservice/imbridge-mx/ping", {},
                token=setup.as_token,
            )  # fmt: skip

        try:
            pong = await ping()
        except RuntimeError:
            # Synapse's HTTP client now and then fails one request with an internal
            # error (502 M_CONNECTION_FAILED "AlreadyCalled", seen under load): once more.
            pong = await ping()
        assert "duration_ms" in pong
        base = f"http://{setup.listen}/networks/mx/_matrix/app/v1/users/"
        auth = {"Authorization": f"Bearer {setup.hs_token}"}
        newcomer = setup.ghost("irc", "Newcomer")
        async with aiohttp.ClientSession() as http:
            async with http.get(base + newcomer, headers=auth) as resp:
                assert resp.status == 200
            async with http.get(base + scene.alice.user.user_id, headers=auth) as resp:
                assert resp.status == 404
        # Asked about, the ghost now exists: its profile can be read.
        profile = synapse.api("GET", f"/_matrix/client/v3/profile/{newcomer}",
                              token=scene.alice.user.access_token)  # fmt: skip
        assert isinstance(profile, dict)


async def test_a_transaction_of_a_hundred_large_events_is_taken_whole(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    """Synapse sends up to 100 events of up to 64 KiB in one transaction; refused, it
    would be retried forever and the bridge would hear nothing more from Matrix."""
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "asbig") as scene:
        sender = scene.alice.user.user_id
        elsewhere = "!notbridged:localhost"  # big, but in a room the bridge does not relay
        big = [_event(elsewhere, sender, "x" * 40_000) for _ in range(99)]
        events = [*big, _event(scene.room, sender, "after the big ones")]
        assert await _push(setup, "big1", events, setup.hs_token) == 200
        seen = await wait_for(lambda: scene.ivan.messages(scene.chan), what="-> IRC")
        assert seen[0].text.endswith("> after the big ones")


async def test_a_kicked_ghost_is_brought_back_for_its_next_message(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "askick") as scene:
        alice, ivan, room, chan = scene.alice, scene.ivan, scene.room, scene.chan
        ghost = setup.ghost("irc", ivan.nick)
        ivan.say(chan, "first")
        await wait_for(lambda: alice.messages(room, sender=ghost), what="first -> Matrix")
        kicked = await alice.client.room_kick(room, ghost, reason="test")
        assert not isinstance(kicked, nio.ErrorResponse), kicked
        ivan.say(chan, "second")
        got = await wait_for(lambda: alice.bodies(room, sender=ghost)[1:], what="second")
        assert got == ["second"]


async def test_two_rooms_of_the_homeserver_show_each_other_through_ghosts(
    synapse_appservice: tuple[SynapseServer, Appservice], tmp_path: Path
) -> None:
    """Without a nick prefix in appservice mode, a message relayed between two Matrix
    rooms must still say who wrote it: it comes from a ghost named after them."""
    synapse, setup = synapse_appservice
    async with Watcher(synapse, synapse.register()) as alice:
        room_a = await alice.create_room(invite=[setup.bot])
        room_b = await alice.create_room(invite=[setup.bot])
        config = parse_config(json.dumps({
            "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"},
                       "http": {"listen": setup.listen}},
            "networks": {"mx": setup.network()},
            "gateways": {"g": {"rooms": [{"network": "mx", "room": room_a},
                                         {"network": "mx", "room": room_b}]}},
            "archive": {"enabled": False},
        }))  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            ghost = setup.ghost("mx", alice.user.user_id)

            await alice.text(room_a, "ping")
            got = await wait_for(
                lambda: alice.bodies(room_b, sender=ghost), what="A -> B", timeout=PUSHED
            )
            assert got == ["ping"]
            profile = synapse.api("GET", f"/_matrix/client/v3/profile/{ghost}",
                                  token=alice.user.access_token)  # fmt: skip
            assert profile["displayname"] == alice.user.user_id[1:].split(":")[0]
            assert not alice.bodies(room_b, sender=setup.bot)
