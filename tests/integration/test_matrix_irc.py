"""Matrix ⇄ IRC through the whole daemon: a Matrix room and an ngircd channel in one
gateway, each watched by an ordinary client of its own network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.synapse import SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


async def test_matrix_and_irc_relay_both_ways_with_formatting_and_emotes(
    synapse: SynapseServer, ngircd: Ircd, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    chan = ngircd.channel("mx")
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
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
                            "irc": ngircd.network(),
                        },
                        "gateways": {
                            "g": {
                                "rooms": [
                                    {"network": "mx", "room": room},
                                    {"network": "irc", "room": chan},
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
                await alice.text(
                    room, "hi x", format="org.matrix.custom.html", formatted_body="hi <b>x</b>"
                )
                await alice.send(room, {"msgtype": "m.emote", "body": "waves"})
                await wait_for(lambda: len(ivan.messages(chan)) >= 2, what="Matrix -> IRC")
                text, action = ivan.messages(chan)[:2]
                assert text.text.startswith(f"<{name}@mx> hi \x02x")  # bold, closed or at the end
                assert action.kind == "action"
                assert action.text.endswith("waves")
                ivan.say(chan, "hello \x02matrix\x02")
                got = await wait_for(
                    lambda: alice.messages(room, sender=relay_mx.user_id), what="IRC -> Matrix"
                )
                assert got[0]["content"]["body"] == f"<{ivan.nick}@irc> hello matrix"
                assert "<b>matrix</b>" in got[0]["content"]["formatted_body"]
    finally:
        await ivan.close()
