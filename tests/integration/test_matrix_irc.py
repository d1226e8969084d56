"""Matrix ⇄ IRC through the whole daemon: a Matrix room and an ngircd channel in one
gateway, each watched by an ordinary client of its own network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.process import free_port
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


async def test_an_image_posted_on_matrix_opens_from_the_link_an_irc_user_gets(
    synapse: SynapseServer, ngircd: Ircd, tmp_path: Path
) -> None:
    """Synapse keeps media behind a token (authenticated media, its default): the line on
    IRC carries the bridge's signed link, and opening it yields the very bytes posted."""
    relay_mx = synapse.register()
    chan = ngircd.channel("mxmedia")
    port = free_port()
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"},
                           "http": {"listen": f"127.0.0.1:{port}",
                                    "public_url": f"http://127.0.0.1:{port}/"}},
                "networks": {
                    "mx": {"type": "matrix", "homeserver": synapse.url,
                           "user_id": relay_mx.user_id, "access_token": relay_mx.access_token,
                           "sync_timeout_ms": 1000},
                    "irc": ngircd.network(),
                },
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "irc", "room": chan}]}},
                "archive": {"enabled": False},
            }))  # fmt: skip
            async with Daemon(config) as daemon, aiohttp.ClientSession() as http:
                assert await daemon.ready(30)
                mxc = await alice.upload(image, "plan.png")
                info = {"mimetype": "image/png", "size": len(image)}
                await alice.send(
                    room, {"msgtype": "m.image", "body": "plan.png", "url": mxc,
                           "info": info},
                )  # fmt: skip
                seen = await wait_for(lambda: ivan.messages(chan), what="Matrix image -> IRC")
                links = re.findall(r"https?://\S+", seen[0].text)
                assert links, seen[0].text
                assert links[0].startswith(f"http://127.0.0.1:{port}/media/mx/")
                async with http.get(links[0]) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"] == "image/png"
                    assert await resp.read() == image
                # The homeserver's own download link, as relayed before, opens for no one.
                server, media_id = mxc.removeprefix("mxc://").split("/", 1)
                plain = f"{synapse.url}/_matrix/media/v3/download/{server}/{media_id}"
                async with http.get(plain) as resp:
                    assert resp.status != 200
    finally:
        await ivan.close()
