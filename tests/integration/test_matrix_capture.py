"""What a Matrix user does beyond plain messages reaches the archive, on a real Synapse:
a reaction is archived with the message it answers (and its removal when taken back),
without being relayed; a direct chat with the relay is archived and answered once."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nio
import pytest

from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.db import Database
from imbridge.direct import ARCHIVED_REPLY
from imbridge.testing import archive_hits as search
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


def export(path: Path) -> dict[str, dict[str, Any]]:
    module = importlib.import_module("imbridge.commands.archive")
    out, err = io.StringIO(), io.StringIO()
    assert module.archive_export(path, fmt="jsonl", out=out, err=err) == 0, err.getvalue()
    items = [json.loads(line) for line in out.getvalue().splitlines()]
    return {i["event"]["id"]: i["event"] for i in items}


@asynccontextmanager
async def archiving_bridge(
    tmp_path: Path, server: SynapseServer, relay: MatrixUser, rooms: list[str]
) -> AsyncIterator[tuple[Path, Daemon]]:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        json.dumps(
            {
                "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
                "networks": {
                    "mx": {
                        "type": "matrix",
                        "homeserver": server.url,
                        "user_id": relay.user_id,
                        "access_token": relay.access_token,
                        "sync_timeout_ms": 1000,
                    }
                },
                "gateways": {"g": {"rooms": [{"network": "mx", "room": r} for r in rooms]}},
                "archive": {"retention_days": 30},
            }
        )
    )
    config = load_config(path)
    state = config.bridge.state_dir
    async with Database(state / "imbridge.db", {"archive": ARCHIVE_MIGRATIONS}):
        pass  # harmless once the daemon migrates the archive itself
    async with Daemon(config, recorder=ArchiveStore(config.archive, state_dir=state)) as daemon:
        assert await daemon.ready(30)
        yield path, daemon


async def test_matrix_reaction_is_archived_with_its_target_and_its_removal(
    synapse: SynapseServer, tmp_path: Path
) -> None:
    relay = synapse.register()
    async with (
        Watcher(synapse, synapse.register()) as alice,
        Watcher(synapse, synapse.register()) as bob,
    ):
        a = await alice.create_room(invite=[relay.user_id])
        b = await bob.create_room(invite=[relay.user_id])
        async with archiving_bridge(tmp_path, synapse, relay, [a, b]) as (path, _):
            original = await alice.text(a, "ship it on friday?")
            await wait_for(lambda: bob.bodies(b, sender=relay.user_id), what="message in B")
            react = await alice.client.room_send(
                a,
                "m.reaction",
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "🚀"}},
            )
            assert isinstance(react, nio.RoomSendResponse), react
            redact = await alice.client.room_redact(a, react.event_id)
            assert isinstance(redact, nio.RoomRedactResponse), redact
            await alice.text(a, "sentinel after the reaction")
            await wait_for(
                lambda: any("sentinel" in t for t in bob.bodies(b, sender=relay.user_id)),
                what="sentinel in B",
            )
        # The message, its reaction on the relayed copy, the reaction taken back (its
        # redaction), then the sentinel: each crossed once, in that order.
        relayed = [
            e["type"]
            for e in bob.events.get(b, [])
            if e["sender"] == relay.user_id and e["type"] != "m.room.member"
        ]
        assert relayed == ["m.room.message", "m.reaction", "m.room.redaction", "m.room.message"]

    message_hit, *_ = await asyncio.to_thread(search, path, "ship friday")
    hits = await asyncio.to_thread(search, path, "🚀")
    assert [(h["type"], h["text"].split()[0]) for h in hits] == [
        ("reaction", "took"),
        ("reaction", "reacted"),
    ]
    events = await asyncio.to_thread(export, path)
    removal, reaction = (events[h["event_id"]] for h in hits)
    assert reaction["target"] == removal["target"] == message_hit["event_id"]
    assert (reaction["key"], reaction["removed"], removal["removed"]) == ("🚀", False, True)
    assert reaction["origin"]["remote_id"] == react.event_id
    assert reaction["origin"]["sender"] == alice.user.user_id


async def test_matrix_direct_chat_is_archived_and_answered_once(
    synapse: SynapseServer, tmp_path: Path
) -> None:
    relay = synapse.register()
    async with (
        Watcher(synapse, synapse.register()) as alice,
        Watcher(synapse, synapse.register()) as carol,
    ):
        a = await alice.create_room(invite=[relay.user_id])
        b = await alice.create_room(invite=[relay.user_id])
        async with archiving_bridge(tmp_path, synapse, relay, [a, b]) as (path, daemon):
            dm = await carol.create_room(invite=[relay.user_id], is_direct=True)
            await wait_for(
                lambda: any(
                    e["type"] == "m.room.member" and e.get("state_key") == relay.user_id
                    and e["content"].get("membership") == "join"
                    for e in carol.events.get(dm, [])
                ),
                timeout=20,
                what="the relay joining the direct chat",
            )  # fmt: skip
            await carol.text(dm, "please forward this to the ops room")
            answer = await wait_for(lambda: carol.bodies(dm, sender=relay.user_id),
                                    timeout=20, what="the automatic answer")  # fmt: skip
            assert answer == [ARCHIVED_REPLY]
            relay_path = daemon.relay
            assert relay_path is not None
            before = relay_path.archived
            await carol.text(dm, "second attempt, still private")
            await wait_for(lambda: relay_path.archived > before, timeout=20,
                           what="second message archived")  # fmt: skip
            assert daemon.outbox is not None
            assert await daemon.outbox.wait_idle(10)  # an answer, if queued, is sent by now
            await carol.text(dm, "sentinel")
            await wait_for(lambda: "sentinel" in carol.bodies(dm), what="sentinel seen")
            assert carol.bodies(dm, sender=relay.user_id) == [ARCHIVED_REPLY]

    (first,) = await asyncio.to_thread(search, path, "forward ops room")
    assert (first["room"], first["sender"]) == (dm, carol.user.user_id)
    assert [(o["action"], o["rule"]) for o in first["outcomes"] if o["kind"] == "decision"] == [
        ("ignored", "direct-message")
    ]
    assert not alice.bodies(b, sender=relay.user_id)  # nothing reached the bridged rooms
    assert not alice.bodies(a, sender=relay.user_id)
