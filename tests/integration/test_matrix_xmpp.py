"""Matrix ⇄ XMPP through the whole daemon: a Matrix room and a Prosody MUC in one
gateway, each watched by an ordinary client of its own network."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


async def test_matrix_and_xmpp_rooms_relay_both_ways_with_edits(
    synapse: SynapseServer, prosody: Prosody, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc = prosody.room("mx")
    xavier = await XmppUser.login(prosody)
    try:
        await xavier.join(muc, "xavier")
        async with Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            config = parse_config(
                json.dumps(
                    {
                        "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"}},
                        "networks": {
                            "mx": {
                                "type": "matrix",
                                "homeserver": synapse.url,
                                "user_id": relay_mx.user_id,
                                "access_token": relay_mx.access_token,
                                "sync_timeout_ms": 1000,
                            },
                            "xm": {
                                "type": "xmpp",
                                "jid": relay_jid,
                                "password": relay_pw,
                                "host": prosody.host,
                                "port": prosody.port,
                                "tls": "plain",
                                "nick": "relay",
                            },
                        },
                        "gateways": {
                            "g": {
                                "rooms": [
                                    {"network": "mx", "room": room},
                                    {"network": "xm", "room": muc},
                                ]
                            }
                        },
                        "archive": {"enabled": False},
                    }
                )
            )
            async with Daemon(config) as daemon:
                assert await daemon.ready(30)
                name = alice.user.user_id[1:].split(":")[0]
                first = await alice.text(
                    room,
                    "hi **x**",
                    format="org.matrix.custom.html",
                    formatted_body="hi <b>x</b><script>bad()</script>",
                )
                await wait_for(
                    lambda: f"<{name}@mx> hi **x**" in xavier.bodies(muc), what="Matrix -> XMPP"
                )
                await alice.send(
                    room,
                    {
                        "msgtype": "m.text",
                        "body": "* hi again",
                        "m.new_content": {"msgtype": "m.text", "body": "hi again"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": first},
                    },
                )
                await wait_for(
                    lambda: f"<{name}@mx> hi again" in xavier.bodies(muc),
                    what="edit Matrix -> XMPP",
                )
                xavier.say(muc, "hello matrix")
                got = await wait_for(
                    lambda: alice.bodies(room, sender=relay_mx.user_id), what="XMPP -> Matrix"
                )
                assert got == ["<xavier@xm> hello matrix"]
                assert not any("bad()" in b for b in xavier.bodies(muc))
    finally:
        await xavier.close()
