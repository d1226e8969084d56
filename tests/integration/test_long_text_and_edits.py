"""Long messages and edits as IRC users live them, through the whole daemon: a Matrix
room, a Prosody MUC and an ngircd channel in one gateway, each watched by an ordinary
client of its own network.

A 5 000-character message reaches IRC whole (every word in order, in lines the server
takes) or as its first lines and a link whose body is the whole of it; three quick edits
become one short line; and nobody's edit of somebody else's message changes anything
elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.process import free_port
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

LONG = " ".join(f"word{i}-ünï" for i in range(500))[:5000]
NS_CORRECT = "{urn:xmpp:message-correct:0}replace"


@dataclass
class World:
    daemon: Daemon
    alice: Watcher
    mallory: Watcher
    room: str
    muc: str
    chan: str
    xavier: XmppUser
    ivan: IrcUser
    relay_nick: str
    port: int

    @property
    def name(self) -> str:
        return self.alice.user.user_id[1:].split(":")[0]

    def irc_lines(self) -> list[str]:
        return self.ivan.texts(self.chan, self.relay_nick)


@contextlib.asynccontextmanager
async def world(
    synapse: SynapseServer,
    prosody: Prosody,
    ngircd: Ircd,
    tmp_path: Path,
    *,
    public: bool = False,
    irc: dict[str, Any] | None = None,
) -> AsyncIterator[World]:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc, chan = prosody.room("long"), ngircd.channel("long")
    port = free_port()
    xavier = await XmppUser.login(prosody)
    ivan = await IrcUser.connect(ngircd, "ivan")
    irc_net = ngircd.network(**(irc or {}))
    http: dict[str, Any] = {}
    if public:
        http = {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}/"}
    try:
        await xavier.join(muc, "xavier")
        await ivan.join(chan)
        async with (
            Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice,
            Watcher(synapse, synapse.register("mallory" + relay_mx.user_id[2:8])) as mallory,
        ):
            # Mallory moderates the Matrix room: she may redact others' messages there.
            room = await alice.create_room(
                invite=[relay_mx.user_id, mallory.user.user_id],
                power_level_override={"users": {mallory.user.user_id: 50}},  # alice: creator
            )
            await mallory.join(room)
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"},
                           "http": http},
                "networks": {
                    "mx": {"type": "matrix", "homeserver": synapse.url,
                           "user_id": relay_mx.user_id, "access_token": relay_mx.access_token,
                           "sync_timeout_ms": 1000},
                    "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                           "host": prosody.host, "port": prosody.port, "tls": "plain",
                           "nick": "relay"},
                    "irc": irc_net,
                },
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "xm", "room": muc},
                                             {"network": "irc", "room": chan}]}},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(30)
                yield World(
                    daemon, alice, mallory, room, muc, chan, xavier, ivan, irc_net["nick"], port
                )
    finally:
        await ivan.close()
        await xavier.close()


def fits_the_wire(line: str, w: World) -> bool:
    """The line as the server relays it to a member, with the relay's own prefix (ngircd
    shows a loopback client as `nick!~user@localhost`)."""
    prefix = f":{w.relay_nick}!~{w.relay_nick}@localhost PRIVMSG {w.chan} :"
    return len((prefix + line).encode()) + 2 <= 512


async def test_a_5000_character_message_reaches_irc_whole_from_matrix_and_from_xmpp(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    async with world(synapse, prosody, ngircd, tmp_path) as w:
        await w.alice.text(w.room, LONG)
        await wait_for(
            lambda: " ".join(w.irc_lines()).split()[-1:] == LONG.split()[-1:],
            timeout=60,
            what="the last word of the Matrix message on IRC",
        )
        lines = w.irc_lines()
        assert len(lines) > 10
        assert lines[0].startswith(f"<{w.name}@mx> word0-ünï")
        assert " ".join(lines).split() == f"<{w.name}@mx> {LONG}".split()
        assert all(fits_the_wire(line, w) for line in lines)
        await wait_for(lambda: f"<{w.name}@mx> {LONG}" in w.xavier.bodies(w.muc), what="XMPP")

        sent = len(lines)
        w.xavier.say(w.muc, LONG)
        await wait_for(
            lambda: " ".join(w.irc_lines()[sent:]).split()[-1:] == LONG.split()[-1:],
            what="the last word of the XMPP message on IRC",
            timeout=60,
        )
        from_xmpp = w.irc_lines()[sent:]
        assert " ".join(from_xmpp).split() == f"<xavier@xm> {LONG}".split()
        assert all(fits_the_wire(line, w) for line in from_xmpp)
        await wait_for(
            lambda: f"<xavier@xm> {LONG}" in w.alice.bodies(w.room), what="XMPP -> Matrix whole"
        )


async def test_a_long_message_is_paced_whole_through_a_stock_inspircd(
    synapse: SynapseServer, prosody: Prosody, inspircd_stock: Ircd, tmp_path: Path
) -> None:
    """InspIRCd's stock limits disconnect a client with 8 KiB unprocessed: the adapter's
    default flood control paces the lines, and every one arrives."""
    async with world(synapse, prosody, inspircd_stock, tmp_path) as w:
        await w.alice.text(w.room, LONG)
        await wait_for(
            lambda: " ".join(w.irc_lines()).split()[-1:] == LONG.split()[-1:],
            timeout=120,
            what="the last word of the Matrix message on IRC",
        )
        assert " ".join(w.irc_lines()).split() == f"<{w.name}@mx> {LONG}".split()
        assert all(fits_the_wire(line, w) for line in w.irc_lines())
        assert w.daemon.reconnects.get("irc", 0) == 0  # never flooded off the server


async def test_with_a_public_url_irc_gets_the_first_lines_and_a_link_to_the_whole(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    async with (
        world(synapse, prosody, ngircd, tmp_path, public=True) as w,
        aiohttp.ClientSession() as http,
    ):
        await w.alice.text(w.room, LONG)
        await wait_for(
            lambda: any("[full text: " in line for line in w.irc_lines()), what="the link"
        )
        lines = w.irc_lines()
        assert len(lines) <= 5
        assert lines[0].startswith(f"<{w.name}@mx> word0-ünï")
        (link,) = re.findall(r"https?://\S+(?=\])", lines[-1])
        assert link.startswith(f"http://127.0.0.1:{w.port}/text/")
        async with http.get(link) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert await resp.text() == f"<{w.name}@mx> {LONG}"
        async with http.get(link.replace("/text/", "/text/1")) as resp:
            assert resp.status == 404  # a link not signed by the bridge opens nothing
        await wait_for(lambda: f"<{w.name}@mx> {LONG}" in w.xavier.bodies(w.muc), what="XMPP")


def replacement(target: str, body: str) -> dict[str, Any]:
    return {
        "msgtype": "m.text",
        "body": f"* {body}",
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }


async def test_three_quick_edits_on_matrix_become_one_short_irc_line(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    async with world(synapse, prosody, ngircd, tmp_path, irc={"edit_window": 30}) as w:
        first = await w.alice.text(w.room, "we meet at teh station at noon")
        await wait_for(w.irc_lines, what="the message on IRC")
        for body in ("we meet at the station at noon", "we meet at the station at 1pm",
                     "we meet at the station at 2pm"):  # fmt: skip
            await w.alice.send(w.room, replacement(first, body))
        await wait_for(
            lambda: f"<{w.name}@mx> we meet at the station at 2pm" in w.xavier.bodies(w.muc),
            what="the last edit on XMPP",
        )
        await w.alice.text(w.room, "sentinel")  # behind the held line: it goes at once
        await wait_for(lambda: f"<{w.name}@mx> sentinel" in w.irc_lines(), what="sentinel")
        assert w.irc_lines() == [
            f"<{w.name}@mx> we meet at teh station at noon",
            f'* {w.name} corrected: "teh" -> "the", "noon" -> "2pm"',
            f"<{w.name}@mx> sentinel",
        ]


async def test_an_edit_of_someone_elses_message_changes_nothing_on_xmpp_or_irc(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    async with world(synapse, prosody, ngircd, tmp_path, irc={"edit_window": 0}) as w:
        first = await w.alice.text(w.room, "I will pay the invoice")
        said = f"<{w.name}@mx> I will pay the invoice"
        await wait_for(lambda: said in w.irc_lines(), what="the message on IRC")
        await wait_for(lambda: said in w.xavier.bodies(w.muc), what="the message on XMPP")
        await w.mallory.send(w.room, replacement(first, "I will never pay"))
        # A moderator's removal is hers to make on Matrix, not on the other networks.
        redacted = await w.mallory.client.room_redact(w.room, first)
        assert isinstance(redacted, nio.RoomRedactResponse), redacted
        await w.alice.text(w.room, "sentinel")
        sentinel = f"<{w.name}@mx> sentinel"
        await wait_for(lambda: sentinel in w.irc_lines(), what="sentinel on IRC")
        await wait_for(lambda: sentinel in w.xavier.bodies(w.muc), what="sentinel on XMPP")
        assert w.irc_lines() == [said, sentinel]
        assert w.xavier.bodies(w.muc) == [said, sentinel]
        assert not [m for m in w.xavier.messages if m.find(f".//{NS_CORRECT}") is not None]
        assert not [m for m in w.xavier.messages if "retract" in ET.tostring(m, "unicode")]
        assert w.daemon.relay is not None
        assert w.daemon.relay.stats["mx"].ignored == 2


async def test_an_xmpp_correction_of_another_occupants_message_changes_nothing_elsewhere(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    async with world(synapse, prosody, ngircd, tmp_path, irc={"edit_window": 0}) as w:
        xena = await XmppUser.login(prosody)
        try:
            await xena.join(w.muc, "xena")
            first = w.xavier.say(w.muc, "the vote is yes")
            said = "<xavier@xm> the vote is yes"
            await wait_for(lambda: said in w.irc_lines(), what="the message on IRC")
            await wait_for(lambda: said in w.alice.bodies(w.room), what="the message on Matrix")
            xena.say(w.muc, "the vote is no", replace=first)  # XEP-0308, not hers to fix
            w.xavier.say(w.muc, "sentinel")
            sentinel = "<xavier@xm> sentinel"
            await wait_for(lambda: sentinel in w.irc_lines(), what="sentinel on IRC")
            await wait_for(lambda: sentinel in w.alice.bodies(w.room), what="sentinel on Matrix")
            assert w.irc_lines() == [said, sentinel]
            assert w.alice.bodies(w.room) == [said, sentinel]
            assert w.daemon.relay is not None
            assert w.daemon.relay.stats["xm"].ignored == 1
        finally:
            await xena.close()
