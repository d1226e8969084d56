"""A private message to the relay's nick, on real ngircd and InspIRCd: archived (never
relayed), and its sender gets one notice saying so, not one per message."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.db import Database
from imbridge.direct import ARCHIVED_REPLY
from imbridge.testing import archive_hits as search
from tests.servers.ircd import Ircd, IrcUser, eventually

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("impl", ["ngircd", "inspircd"])
async def test_irc_private_message_is_archived_and_answered_once(
    impl: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: Ircd = request.getfixturevalue(impl)
    a, b = server.channel("a"), server.channel("b")
    carol = await IrcUser.connect(server, "carol")
    try:
        await carol.join(a)
        await carol.join(b)
        path = tmp_path / "bridge.yaml"
        path.write_text(json.dumps({
            "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
            "networks": {"irc": server.network(nick="relay" + secrets.token_hex(2))},
            "gateways": {"g": {"rooms": [{"network": "irc", "room": a},
                                         {"network": "irc", "room": b}]}},
            "archive": {"retention_days": 30},
        }))  # fmt: skip
        config = load_config(path)
        state = config.bridge.state_dir
        async with Database(state / "imbridge.db", {"archive": ARCHIVE_MIGRATIONS}):
            pass  # harmless once the daemon migrates the archive itself
        store = ArchiveStore(config.archive, state_dir=state)
        async with Daemon(config, recorder=store) as daemon:
            assert await daemon.ready(30)
            relay = daemon.adapters["irc"].identity

            def answers() -> list[str]:
                return [s.text for s in carol.seen if s.kind == "privnotice" and s.nick == relay]

            carol.conn.privmsg(relay, "hi relay, please pass this on to the ops room")
            await eventually(answers, timeout=15, what="the automatic answer")
            assert answers() == [ARCHIVED_REPLY]

            assert daemon.relay is not None
            assert daemon.outbox is not None
            before = daemon.relay.archived
            carol.conn.privmsg(relay, "second private line")
            await eventually(lambda: daemon.relay is not None and daemon.relay.archived > before,
                             what="second line archived")  # fmt: skip
            assert await daemon.outbox.wait_idle(10)  # an answer, if queued, is sent by now
            # The sentinel comes down the same connection after any answer would have.
            carol.say(a, "sentinel")
            await eventually(lambda: any("sentinel" in t for t in carol.texts(b, relay)),
                             what="sentinel relayed")  # fmt: skip
            assert answers() == [ARCHIVED_REPLY]
            assert not any("pass this on" in t or "private line" in t for t in carol.texts(b))
            await daemon.db.read(store.checkpoint)
    finally:
        await carol.close()

    (hit,) = await asyncio.to_thread(search, path, "pass this on")
    assert (hit["room"], hit["sender"]) == (carol.nick, carol.nick)
    assert [(o["action"], o["rule"]) for o in hit["outcomes"] if o["kind"] == "decision"] == [
        ("ignored", "direct-message")
    ]
    assert len(await asyncio.to_thread(search, path, "second private line")) == 1
