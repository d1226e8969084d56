"""Policy and archive through the whole daemon on real servers: an IRC line with a denied
keyword reaches the allowed XMPP room but not the Matrix room, its sender is told which
rule held it back, and the archive records both decisions where `archive search` finds
them."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.db import Database
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


def command(name: str, *args: Any, **kw: Any) -> tuple[int, str]:
    module = importlib.import_module("imbridge.commands.archive")
    out, err = io.StringIO(), io.StringIO()
    code = getattr(module, name)(*args, out=out, err=err, **kw)
    return int(code), out.getvalue() + err.getvalue()


async def test_irc_keyword_denied_to_matrix_allowed_to_xmpp_and_archived(
    synapse: SynapseServer, prosody: Prosody, ngircd: Ircd, tmp_path: Path
) -> None:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    chan = ngircd.channel("pol")
    muc = prosody.room("pol")
    ivan = await IrcUser.connect(ngircd, "ivan")
    xavier = await XmppUser.login(prosody)
    try:
        await ivan.join(chan)
        await xavier.join(muc, "xavier")
        async with Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            path = tmp_path / "bridge.yaml"
            path.write_text(
                json.dumps(
                    {
                        "bridge": {
                            "state_dir": str(tmp_path / "state"),
                            "log": {"level": "warning"},
                        },
                        "networks": {
                            "irc": ngircd.network(),
                            "xm": {
                                "type": "xmpp",
                                "jid": relay_jid,
                                "password": relay_pw,
                                "host": prosody.host,
                                "port": prosody.port,
                                "tls": "plain",
                                "nick": "relay",
                            },
                            "mx": {
                                "type": "matrix",
                                "homeserver": synapse.url,
                                "user_id": relay_mx.user_id,
                                "access_token": relay_mx.access_token,
                                "sync_timeout_ms": 1000,
                            },
                        },
                        "gateways": {
                            "g": {
                                "rooms": [
                                    {"network": "irc", "room": chan},
                                    {"network": "xm", "room": muc},
                                    {"network": "mx", "room": room},
                                ]
                            }
                        },
                        "policy": {
                            "rules": [
                                {
                                    "name": "no-confidential-to-matrix",
                                    "action": "deny",
                                    "from": {"network": "irc"},
                                    "to": {"network": "mx"},
                                    "text": "(?i)\\bconfidential\\b",
                                    "notify_sender": True,
                                }
                            ]
                        },
                        "archive": {"retention_days": 30},
                    }
                )
            )
            config = load_config(path)
            state = config.bridge.state_dir
            async with Database(state / "imbridge.db", {"archive": ARCHIVE_MIGRATIONS}):
                pass  # harmless once the daemon migrates the archive itself
            store = ArchiveStore(config.archive, state_dir=state)
            async with Daemon(config, recorder=store) as daemon:
                assert await daemon.ready(30)
                ivan.say(chan, "the Confidential merger is on")
                ivan.say(chan, "lunch at noon?")
                await wait_for(
                    lambda: any("lunch at noon?" in b for b in xavier.bodies(muc)),
                    what="IRC -> XMPP",
                )
                assert any("Confidential merger" in b for b in xavier.bodies(muc))
                got = await wait_for(
                    lambda: [
                        b for b in alice.bodies(room, sender=relay_mx.user_id) if "lunch" in b
                    ],
                    what="IRC -> Matrix",
                )
                assert got
                assert not any("merger" in b for b in alice.bodies(room))
                notices = await wait_for(
                    lambda: [
                        m.text for m in ivan.messages(chan) if "no-confidential-to-matrix" in m.text
                    ],
                    what="notice to the IRC sender",
                )
                assert "merger" not in notices[0]
                await daemon.db.read(store.checkpoint)
        code, out = await asyncio.to_thread(
            command, "archive_search", path, "confidential merger", fmt="json"
        )
        assert code == 0, out
        (hit,) = json.loads(out)
        assert hit["sender"] == ivan.nick
        decisions = {
            (o["dest_network"], o["action"], o["rule"])
            for o in hit["outcomes"]
            if o["kind"] == "decision"
        }
        assert decisions == {
            ("xm", "allow", "default"),
            ("mx", "deny", "no-confidential-to-matrix"),
        }
        code, out = await asyncio.to_thread(command, "archive_verify", path)
        assert code == 0, out
    finally:
        await ivan.close()
        await xavier.close()
