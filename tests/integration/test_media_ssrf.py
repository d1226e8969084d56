"""Attachment links posted on one network are never fetched from internal addresses.

An XMPP user posts an out-of-band link (XEP-0066) to a service on the bridge's own
loopback, directly and through a redirect from an allowed file host. The bridge relays it
to a Matrix room with `media: upload` and to a second XMPP network that re-uploads files:
neither may fetch the internal page and post it as a file, and both still get the link.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.integration.filehost import serving
from tests.servers.prosody import Prosody, XmppUser, eventually
from tests.servers.synapse import SynapseServer, Watcher

pytestmark = pytest.mark.integration

SECRET = b"internal-only: db password hunter2"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NS_OOB = "{jabber:x:oob}"


def oob_url(message: ET.Element) -> str:
    return message.findtext(f"{NS_OOB}x/{NS_OOB}url") or ""


async def test_oob_link_to_an_internal_address_is_relayed_as_a_link_never_fetched(
    synapse: SynapseServer, prosody: Prosody, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    (ja, pa), (jb, pb) = [await asyncio.to_thread(prosody.register) for _ in range(2)]
    muc_a, muc_b = prosody.room("ssrf-a"), prosody.room("ssrf-b")
    alice, bob = await XmppUser.login(prosody), await XmppUser.login(prosody)
    try:
        await alice.join(muc_a, "alice")
        await bob.join(muc_b, "bob")
        async with (
            Watcher(synapse, synapse.register("mara" + relay_mx.user_id[2:8])) as mara,
            serving({"secret": (SECRET, "text/plain")}) as internal,
            serving({"ok.png": (PNG, "image/png")}) as files,
        ):
            files.redirects["go"] = internal.url("secret")
            room = await mara.create_room(invite=[relay_mx.user_id])
            allowed = [files.origin]  # the file host is trusted; the internal one is not
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"}},
                "networks": {
                    "mx": {"type": "matrix", "homeserver": synapse.url,
                           "user_id": relay_mx.user_id, "access_token": relay_mx.access_token,
                           "sync_timeout_ms": 1000, "media": "upload",
                           "media_allow_origins": allowed},
                    "xa": {"type": "xmpp", "jid": ja, "password": pa, "host": prosody.host,
                           "port": prosody.port, "tls": "plain", "nick": "relay"},
                    "xb": {"type": "xmpp", "jid": jb, "password": pb, "host": prosody.host,
                           "port": prosody.port, "tls": "plain", "nick": "relay",
                           "media_allow_origins": allowed},
                },
                "gateways": {"g": {"rooms": [{"network": "xa", "room": muc_a},
                                             {"network": "mx", "room": room},
                                             {"network": "xb", "room": muc_b}]}},
                "archive": {"enabled": False},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(30)
                links = [internal.url("secret"), files.url("go"), files.url("ok.png")]
                for url in links:  # the last one is allowed: it proves the others are done
                    share = alice.client.make_message(mto=muc_a, mbody=url, mtype="groupchat")
                    share["oob"]["url"] = url
                    share.send()

                def in_b() -> list[ET.Element]:
                    return [m for m in bob.messages if m.get("from") == f"{muc_b}/relay"]

                def images() -> list[dict[str, object]]:
                    msgs = mara.messages(room, sender=relay_mx.user_id)
                    return [m for m in msgs if m["content"].get("msgtype") == "m.image"]

                await eventually(lambda: len(in_b()) == 3, timeout=30, what="3 files in B")
                await eventually(images, timeout=30, what="the allowed image on Matrix")

                # The allowed file was copied, so uploads work at all ...
                assert "/file_share/" in oob_url(in_b()[2])
                (image,) = images()
                # ... and the internal page never was: both links went as links.
                assert [oob_url(m) for m in in_b()[:2]] == links[:2]
                bodies = mara.bodies(room, sender=relay_mx.user_id)
                assert any(links[0] in b for b in bodies)
                assert any(links[1] in b for b in bodies)
                assert [m for m in mara.messages(room) if m["content"].get("url")] == [image]
                assert internal.requested == []
                assert files.requested.count("go") == 2  # the redirect was not followed
    finally:
        await alice.close()
        await bob.close()
