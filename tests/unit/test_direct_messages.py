"""Direct messages from one person to another across networks, on memory adapters
through the real daemon: addressed through the relay, answered back without naming
anyone, held back by policy (and the sender told), and every one archived."""

from __future__ import annotations

from pathlib import Path

import pytest

from imbridge import codec
from imbridge.adapters.memory import MemoryHub
from imbridge.config import load_config
from imbridge.direct import ARCHIVED_REPLY
from imbridge.errors import ConfigError
from imbridge.events import EventId, Message, Origin, Recipient, Sender
from tests.unit.conftest import settle, until
from tests.unit.test_policy_hooks import Marker, python_hook, use_hooks
from tests.unit.test_reactions_direct import bridge, relayed, search

BASE = """
bridge: {{state_dir: "{state}"}}
networks:
  a: {{type: memory, nick: relay-a, capabilities: {{direct_sends: true}}}}
  b: {{type: memory, nick: relay-b, capabilities: {{direct_sends: true}}}}
  c: {{type: memory, nick: relay-c}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
archive:
  retention_days: 30
"""


def config_file(tmp_path: Path, policy: str = "") -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(BASE.format(state=tmp_path / "state") + policy)
    return path


def said(hub: MemoryHub, room: str) -> list[str]:
    return [p.text for p in hub.in_room(room)]


async def test_a_message_naming_a_person_reaches_them_and_their_answer_comes_back(
    tmp_path: Path,
) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub):
        hub.post("relay-a", "alice", "bob@b are you there?")
        await until(lambda: len(hub.in_room("bob")) == 1)
        # bob answers the relay that wrote to him, naming no one
        hub.post("relay-b", "bob", "yes, what's up")
        await until(lambda: len(hub.in_room("alice")) == 1)
        # and alice goes on without naming him again
        hub.post("relay-a", "alice", "lunch?")
        await until(lambda: len(hub.in_room("bob")) == 2)
    assert said(hub, "bob") == ["<alice@a> are you there?", "<alice@a> lunch?"]
    assert said(hub, "alice") == ["<bob@b> yes, what's up"]
    assert [p.sender for p in hub.in_room("bob")] == ["relay-b", "relay-b"]
    assert relayed(hub, "#x") == []
    assert relayed(hub, "#y") == []

    (hit,) = await search(path, "there")
    decisions = [o for o in hit["outcomes"] if o["kind"] == "decision"]
    assert [(o["dest_network"], o["dest_room"], o["action"]) for o in decisions] == [
        ("b", "bob", "allow")
    ]
    (answer,) = await search(path, "what's up")
    assert (answer["sender"], answer["room"]) == ("bob", "bob")


async def test_the_answer_path_survives_a_restart(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub):
        hub.post("relay-a", "alice", "bob@b ping")
        await until(lambda: len(hub.in_room("bob")) == 1)
    async with bridge(path, hub):
        hub.post("relay-b", "bob", "pong")
        await until(lambda: len(hub.in_room("alice")) == 1)
    assert said(hub, "alice") == ["<bob@b> pong"]


async def test_a_message_naming_no_one_keeps_the_relay_answer(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub):
        hub.post("relay-a", "carol", "nobody@nowhere hello")
        await until(lambda: len(hub.in_room("carol")) == 1)
    assert said(hub, "carol") == [ARCHIVED_REPLY]


async def test_a_network_without_direct_sends_is_unreachable_and_the_sender_told(
    tmp_path: Path,
) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    # c has no direct sends: its addresses are recognised by no one, so `dan@c` is
    # just words to the relay
    async with bridge(path, hub):
        hub.post("relay-a", "alice", "dan@c hi")
        await until(lambda: len(hub.in_room("alice")) == 1)
    assert said(hub, "alice") == [ARCHIVED_REPLY]
    assert hub.in_room("dan") == []


DENY_DIRECT = """
policy:
  default: allow
  rules:
    - {name: no-dms, action: deny, to: {direct: true}}
"""


async def test_a_deny_rule_on_direct_messages_holds_them_back_and_tells_the_sender(
    tmp_path: Path,
) -> None:
    path, hub = config_file(tmp_path, DENY_DIRECT), MemoryHub()
    async with bridge(path, hub) as daemon:
        hub.post("relay-a", "alice", "bob@b secret plans")
        await until(lambda: len(hub.in_room("alice")) == 1)
        hub.post("#x", "alice", "sentinel")  # rooms still relay
        await until(lambda: len(relayed(hub, "#y")) == 1)
        await settle(daemon)
    assert hub.in_room("bob") == []
    (notice,) = said(hub, "alice")
    assert "bob on b was not delivered" in notice
    assert "no-dms" in notice
    (hit,) = await search(path, "secret")
    decisions = [o for o in hit["outcomes"] if o["kind"] == "decision"]
    assert [(o["dest_room"], o["action"], o["rule"]) for o in decisions] == [
        ("bob", "deny", "no-dms")
    ]


DEFAULT_DENY = """
policy:
  default: deny
  groups:
    legal: [{network: a, user: "alice"}, {network: b, user: "lawyer"}]
    sales: [{network: b, user: "bob"}]
  barriers:
    - {name: legal-sales, between: [legal, sales]}
  rules:
    - {name: dms-to-b, action: allow, from: {network: a}, to: {direct: true, network: b}}
"""


async def test_default_deny_blocks_direct_messages_no_rule_allows_and_barriers_hold(
    tmp_path: Path,
) -> None:
    path, hub = config_file(tmp_path, DEFAULT_DENY), MemoryHub()
    async with bridge(path, hub):
        hub.post("relay-a", "alice", "lawyer@b allowed by the rule")
        await until(lambda: len(hub.in_room("lawyer")) == 1)
        hub.post("relay-a", "alice", "bob@b across the barrier")
        await until(lambda: len(hub.in_room("alice")) == 1)
        hub.post("relay-b", "lawyer", "no rule lets b write to a")
        await until(lambda: len(hub.in_room("lawyer")) == 2)
    assert said(hub, "lawyer")[0] == "<alice@a> allowed by the rule"
    assert "legal-sales" in said(hub, "alice")[0]
    assert "not delivered" in said(hub, "lawyer")[1]
    assert hub.in_room("bob") == []


def test_to_user_is_a_person_only_for_direct_messages(tmp_path: Path) -> None:
    room_rule = "policy:\n  rules:\n    - {name: r, action: deny, to: {user: bob}}\n"
    with pytest.raises(ConfigError, match="direct: true"):
        load_config(config_file(tmp_path, room_rule))
    dm_rule = "policy:\n  rules:\n    - {name: r, action: deny, to: {user: bob, direct: true}}\n"
    assert load_config(config_file(tmp_path, dm_rule)).policy.rules[0].to.user == "bob"


def test_the_recipient_survives_the_codec_and_needs_a_direct_message() -> None:
    sender = Sender(id="alice", name="alice")
    origin = Origin(network="a", room="alice", sender=sender, direct=True,
                    recipient=Recipient(network="b", user="bob"))  # fmt: skip
    message = Message(id=EventId("m"), origin=origin, text="hi")
    assert codec.loads(codec.dumps(message)) == message
    with pytest.raises(ValueError, match="direct"):
        Origin(network="a", room="#x", sender=sender, recipient=Recipient(network="b", user="bob"))


async def test_policy_hooks_are_asked_about_direct_messages_too(tmp_path: Path) -> None:
    path, hub = config_file(tmp_path), MemoryHub()
    async with bridge(path, hub) as daemon:
        use_hooks(daemon, python_hook(Marker()))
        hub.post("relay-a", "alice", "bob@b the aurora plan")
        await until(lambda: len(hub.in_room("alice")) == 1)
        hub.post("relay-a", "alice", "bob@b card 4111 here")
        await until(lambda: len(hub.in_room("bob")) == 1)
    assert said(hub, "bob") == ["<alice@a> card [redacted] here"]
    (refusal,) = said(hub, "alice")
    assert "not delivered" in refusal
    assert "hook:words" in refusal
