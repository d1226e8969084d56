"""Reactions cross the gateway as each destination can show them: natively (on the
relayed copy), as a line, or not at all; a removal follows where it can; policy holds
a denied key back and archives why."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from imbridge.adapter import Capabilities
from imbridge.adapters.memory import MemoryHub
from imbridge.events import EventId, Message, MessageKind, Origin, Reaction, Sender
from imbridge.policy import Destination
from imbridge.render import render
from imbridge.router import Route
from tests.unit.conftest import settle, until
from tests.unit.test_reactions_direct import bridge, relayed, search

CONFIG = """
bridge: {{state_dir: "{state}"}}
networks:
  a: {{type: memory, nick: relay}}
  b: {{type: memory, nick: relay-b, capabilities: {{reactions: {mode}}}}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
archive:
  retention_days: 30
policy:
  default: allow
  rules:
    - {{name: no-eggplant, action: deny, text: "🍆"}}
"""

ORIGIN = Origin(network="a", room="#x", sender=Sender(id="bob", name="bob"))
ROUTE = Route("g", Destination("b", "#y"), "<{nick}> ")
SHIP = Message(id=EventId("m"), origin=ORIGIN, text="ship   it?\nnow, before the freeze hits")


def caps(reactions: Literal["native", "text", "none"]) -> Capabilities:
    return Capabilities(edits=True, deletes=True, replies=True, attachments=True,
                        formatting="plain", max_text_bytes=1000, reactions=reactions)  # fmt: skip


def reaction(key: str = "👍", *, removed: bool = False) -> Reaction:
    return Reaction(id=EventId("r"), origin=ORIGIN, target=EventId("m"), key=key, removed=removed)


def config_file(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", mode=mode))
    return path


def test_native_destination_gets_the_reaction_with_an_excerpt_of_its_target() -> None:
    shown = render(reaction(), ROUTE, caps("native"), quoted=SHIP)
    assert shown == Reaction(id=EventId("r"), origin=ORIGIN, target=EventId("m"), key="👍",
                             excerpt="ship it? now, before the freeze hits")  # fmt: skip
    removal = render(reaction(removed=True), ROUTE, caps("native"))
    assert isinstance(removal, Reaction)
    assert removal.removed


def test_text_destination_gets_one_line_and_no_line_for_a_removal() -> None:
    shown = render(reaction("🎉"), ROUTE, caps("text"), quoted=SHIP)
    assert isinstance(shown, Message)
    assert shown.kind is MessageKind.NOTICE
    assert shown.text == '* <bob> reacted 🎉 to "ship it? now, before the freeze hits"'
    long = Message(id=EventId("m"), origin=ORIGIN, text="word " * 40)
    cut = render(reaction("🎉"), ROUTE, caps("text"), quoted=long)
    assert isinstance(cut, Message)
    assert cut.text.endswith('…"')
    assert len(cut.text) < 70
    assert render(reaction("🎉", removed=True), ROUTE, caps("text")) is None


def test_destination_without_reactions_gets_nothing() -> None:
    assert render(reaction(), ROUTE, caps("none"), quoted=SHIP) is None


async def test_reaction_lands_on_the_relayed_copy_and_its_removal_follows(
    tmp_path: Path,
) -> None:
    path, hub = config_file(tmp_path, "native"), MemoryHub()
    async with bridge(path, hub) as daemon:
        original = hub.post("#x", "alice", "ship it?")
        await until(lambda: len(relayed(hub, "#y")) == 1)
        (copy,) = [p for p in hub.in_room("#y") if p.relayed]
        added = hub.post("#x", "bob", "👍", kind="reaction", target=original.remote_id)
        hub.post("#x", "bob", "", kind="delete", target=added.remote_id)  # Matrix's way
        hub.post("#x", "bob", "sentinel")
        await until(lambda: len(relayed(hub, "#y")) == 4)
        await settle(daemon)
    shown = [(p.kind, p.text, p.target) for p in hub.in_room("#y") if p.relayed]
    assert shown == [
        ("message", "<alice@a> ship it?", None),
        ("reaction", "👍", copy.remote_id),
        ("unreact", "👍", copy.remote_id),
        ("message", "<bob@a> sentinel", None),
    ]


async def test_reaction_becomes_a_line_where_reactions_are_text(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path, "text"), MemoryHub()
    async with bridge(path, hub) as daemon:
        original = hub.post("#x", "alice", "ship it?")
        await until(lambda: len(relayed(hub, "#y")) == 1)
        added = hub.post("#x", "bob", "👍", kind="reaction", target=original.remote_id)
        hub.post("#x", "bob", "", kind="delete", target=added.remote_id)
        hub.post("#x", "bob", "sentinel")
        await until(lambda: len(relayed(hub, "#y")) == 3)
        await settle(daemon)
    assert relayed(hub, "#y") == [
        "<alice@a> ship it?",
        '* <bob@a> reacted 👍 to "ship it?"',
        "<bob@a> sentinel",
    ]


async def test_denied_key_does_not_cross_and_its_decision_is_archived(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path, "native"), MemoryHub()
    async with bridge(path, hub) as daemon:
        original = hub.post("#x", "alice", "ship it?")
        await until(lambda: len(relayed(hub, "#y")) == 1)
        hub.post("#x", "bob", "🍆", kind="reaction", target=original.remote_id)
        hub.post("#x", "bob", "👍", kind="reaction", target=original.remote_id)
        await until(lambda: len(relayed(hub, "#y")) == 2)
        await settle(daemon)
    assert [p.text for p in hub.in_room("#y") if p.kind == "reaction"] == ["👍"]
    (denied,) = await search(path, "🍆")
    assert [(o["action"], o["rule"]) for o in denied["outcomes"] if o["kind"] == "decision"] == [
        ("deny", "no-eggplant")
    ]
    (allowed,) = await search(path, "👍")
    assert [o["action"] for o in allowed["outcomes"] if o["kind"] == "decision"] == ["allow"]
