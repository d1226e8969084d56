"""Reactions and private messages to the relay account, on memory adapters through the
real daemon: both are archived (and found by `archive search`), neither crosses a
gateway, and a private message is answered once per sender, across restarts."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from imbridge.adapter import Capabilities, Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config import load_config
from imbridge.daemon import Daemon
from imbridge.db import Database
from imbridge.direct import ARCHIVED_REPLY
from imbridge.events import EventId, Message, Origin, Reaction, Sender
from imbridge.policy import Destination
from imbridge.render import render
from imbridge.router import Route
from tests.unit.conftest import settle, until

CONFIG = """
bridge: {{state_dir: "{state}"}}
networks:
  a: {{type: memory, nick: relay}}
  b: {{type: memory, nick: relay-b}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
archive:
  retention_days: 30
"""


async def search(path: Path, words: str) -> list[dict[str, Any]]:
    """`archive search` as the CLI runs it (its own event loop, so in a thread)."""
    return await asyncio.to_thread(_search, path, words)


async def export(path: Path) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_export, path)


def _search(path: Path, words: str) -> list[dict[str, Any]]:
    module = importlib.import_module("imbridge.commands.archive")
    out = io.StringIO()
    code = module.archive_search(path, words, fmt="json", out=out, err=io.StringIO())
    assert code == 0
    hits: list[dict[str, Any]] = json.loads(out.getvalue())
    return hits


def _export(path: Path) -> list[dict[str, Any]]:
    module = importlib.import_module("imbridge.commands.archive")
    out = io.StringIO()
    assert module.archive_export(path, fmt="jsonl", out=out, err=io.StringIO()) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


@asynccontextmanager
async def bridge(path: Path, hub: MemoryHub) -> AsyncIterator[Daemon]:
    config = load_config(path)
    async with Database(config.bridge.state_dir / "imbridge.db", {"archive": ARCHIVE_MIGRATIONS}):
        pass  # the archive tables, as the CLI's tests create them

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    daemon = Daemon(config, factory=build, recorder=ArchiveStore(config.archive,
                    state_dir=config.bridge.state_dir))  # fmt: skip
    await daemon.start()
    try:
        assert await daemon.ready(5)
        yield daemon
        await settle(daemon)
    finally:
        await daemon.stop(drain=0)


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    return path


def relayed(hub: MemoryHub, room: str) -> list[str]:
    return [p.text for p in hub.in_room(room) if p.relayed]


async def test_reaction_is_archived_with_its_target_and_not_relayed(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub) as daemon:
        original = hub.post("#x", "alice", "ship it?")
        await until(lambda: len(relayed(hub, "#y")) == 1)
        hub.post("#x", "bob", "👍", kind="reaction", target=original.remote_id)
        hub.post("#x", "bob", "sentinel")  # relayed after the reaction was handled
        await until(lambda: len(relayed(hub, "#y")) == 2)
        await settle(daemon)
    assert relayed(hub, "#y") == ["<alice@a> ship it?", "<bob@a> sentinel"]

    (hit,) = await search(path, "👍")
    assert (hit["type"], hit["sender"]) == ("reaction", "bob")
    (message,) = await search(path, "ship")
    events = {e["event"]["id"]: e["event"] for e in await export(path)}
    reaction = events[hit["event_id"]]
    assert reaction["target"] == message["event_id"]
    assert (reaction["key"], reaction["removed"]) == ("👍", False)
    assert [(o["dest_network"], o["action"]) for o in hit["outcomes"]] == [("b", "allow")]
    assert await search(path, "thumbs up") == [hit]  # an emoji is found by its name too


async def test_deleting_a_reaction_is_archived_as_its_removal(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub) as daemon:
        original = hub.post("#x", "alice", "ship it?")
        await until(lambda: len(relayed(hub, "#y")) == 1)
        reaction = hub.post("#x", "bob", "🎉", kind="reaction", target=original.remote_id)
        # Matrix takes a reaction back by redacting the reaction event itself.
        hub.post("#x", "bob", "", kind="delete", target=reaction.remote_id)
        hub.post("#x", "bob", "sentinel")
        await until(lambda: len(relayed(hub, "#y")) == 2)
        await settle(daemon)
    assert not [p for p in hub.in_room("#y") if p.kind == "delete"]
    hits = await search(path, "🎉")
    assert [(h["type"], h["text"].split()[0]) for h in hits] == [
        ("reaction", "took"),
        ("reaction", "reacted"),
    ]
    events = {e["event"]["id"]: e["event"] for e in await export(path)}
    removal = events[hits[0]["event_id"]]
    assert removal["removed"] is True
    assert removal["target"] == events[hits[1]["event_id"]]["target"]


async def test_private_message_is_archived_answered_once_and_never_relayed(
    tmp_path: Path,
) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub) as daemon:
        hub.post("relay", "carol", "hi bot, forward this to #y please")
        await until(lambda: len(hub.in_room("carol")) == 1)
        hub.post("relay", "carol", "hello? second try")
        hub.post("relay", "dave", "me too")
        await until(lambda: len(hub.in_room("dave")) == 1)  # answered after carol's 2nd
        hub.post("#x", "alice", "sentinel")
        await until(lambda: len(relayed(hub, "#y")) == 1)
        await settle(daemon)
    assert [p.text for p in hub.in_room("carol")] == [ARCHIVED_REPLY]
    assert relayed(hub, "#y") == ["<alice@a> sentinel"]

    (first,) = await search(path, "forward")
    assert (first["room"], first["sender"]) == ("carol", "carol")
    assert [(o["action"], o["rule"]) for o in first["outcomes"] if o["kind"] == "decision"] == [
        ("ignored", "direct-message")
    ]
    assert len(await search(path, "second try")) == 1

    # A restart does not forget who was answered.
    async with bridge(path, hub) as daemon:
        hub.post("relay", "carol", "third")
        hub.post("relay", "erin", "first from erin")
        await until(lambda: len(hub.in_room("erin")) == 1)
        await settle(daemon)
    assert len(hub.in_room("carol")) == 1
    assert len(await search(path, "third")) == 1


def test_render_shows_a_reaction_and_a_vote_nowhere_yet() -> None:
    origin = Origin(network="a", room="#x", sender=Sender(id="bob", name="bob"))
    route = Route("g", Destination("b", "#y"), "<{nick}> ")
    caps = Capabilities(edits=True, deletes=True, replies=True, attachments=True,
                        formatting="html", max_text_bytes=1000)  # fmt: skip
    reaction = Reaction(id=EventId("r"), origin=origin, target=EventId("m"), key="👍")
    vote = Message(id=EventId("v"), origin=origin, text="voted: a1", archive_only=True,
                   native_type="m.poll.response")  # fmt: skip
    poll = Message(id=EventId("p"), origin=origin, text="Poll: lunch?\n1. yes",
                   native_type="m.poll.start")  # fmt: skip
    assert render(reaction, route, caps) is None
    assert render(vote, route, caps) is None
    shown = render(poll, route, caps)
    assert isinstance(shown, Message)
    assert shown.text == "<bob> Poll: lunch?\n1. yes"
