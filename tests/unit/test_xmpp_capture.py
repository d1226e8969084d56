"""XMPP reactions (XEP-0444) and private messages to the relay reach the core as the
archive needs them: recorded stanzas through the adapter's own reading code, from parse
to the events its sink receives, and the answer it writes back."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import SecretStr

from imbridge.adapter import Outgoing
from imbridge.adapters.xmpp import XmppAdapter, XmppConfig
from imbridge.adapters.xmpp.proto.private import private_message
from imbridge.adapters.xmpp.proto.reactions import LIMIT, ReactionSets, reaction_keys, to_reactions
from imbridge.adapters.xmpp.proto.stanzas import parse_message
from imbridge.adapters.xmpp.proto.translate import to_wire
from imbridge.adapters.xmpp.rooms import Room
from imbridge.errors import PermanentSendError
from imbridge.events import (
    Edit,
    Event,
    EventId,
    Message,
    MessageKind,
    Origin,
    Reaction,
    RemoteId,
    Sender,
)

DATA = Path(__file__).parent.parent / "data" / "xmpp"
ROOM = "room@conference.localhost"
RELAY = "relay@localhost"


def sample(name: str) -> ET.Element:
    return ET.fromstring((DATA / name).read_text())  # noqa: S314 - our recorded samples


class Slot:
    """The adapter's state slot, as the daemon's, in memory: what one run stores, the
    next run of the adapter reads; `ids` stands for the core's id map."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}
        self.ids: dict[str, EventId] = {}

    async def get(self, key: str) -> str | None:
        return self.stored.get(key)

    async def set(self, key: str, value: str) -> None:
        self.stored[key] = value

    async def event_id(self, remote_id: RemoteId) -> EventId | None:
        return self.ids.get(remote_id)


class Run:
    """One run of the client adapter, fed stanzas as the server would send them."""

    def __init__(self, slot: Slot, *, direct_messages: bool = True) -> None:
        config = XmppConfig(
            type="xmpp",
            jid=RELAY,
            password=SecretStr("x"),
            direct_messages=direct_messages,
        )
        self.slot = slot
        self.adapter = XmppAdapter("xm", config, slot)
        self.events: list[Event] = []
        self.adapter._receiver.open(self.sink)
        room = Room(jid=ROOM, wanted_nick="relay", joined=True)
        room.arrived("alice", "alice@localhost/laptop")
        room.arrived("dave", None)
        self.adapter._rooms[ROOM] = room

    async def sink(self, event: Event) -> None:
        self.events.append(event)
        if event.origin.remote_id:  # as the core maps what it archived
            self.slot.ids.setdefault(event.origin.remote_id, event.id)

    async def feed(self, *elements: ET.Element) -> list[Event]:
        before = len(self.events)
        for element in elements:
            await self.adapter._receiver.message(element)
        await self.adapter._receiver.drain()
        return self.events[before:]

    async def stop(self) -> None:
        await self.adapter._writes.aclose()


def with_keys(element: ET.Element, *keys: str, sid: str) -> ET.Element:
    """`element` (a recorded reaction update) carrying `keys` under a new stanza-id."""
    copy = ET.fromstring(ET.tostring(element))  # noqa: S314 - our own sample
    reactions = copy.find("{urn:xmpp:reactions:0}reactions")
    assert reactions is not None
    for child in list(reactions):
        reactions.remove(child)
    for key in keys:
        ET.SubElement(reactions, "{urn:xmpp:reactions:0}reaction").text = key
    stanza_id = copy.find("{urn:xmpp:sid:0}stanza-id")
    assert stanza_id is not None
    stanza_id.set("id", sid)
    return copy


def reactions(events: list[Event]) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    for event in events:
        assert isinstance(event, Reaction)
        out.append((event.key, event.removed, event.target))
    return out


def test_reaction_update_is_read_as_the_whole_set_on_one_message() -> None:
    wire = parse_message(sample("reactions.xml"))
    assert (wire.reaction_id, wire.stanza_id) == ("sid-1", "sid-9")
    assert wire.reactions is not None
    assert reaction_keys(wire.reactions) == ("👍", "🎉")  # blanks and repeats dropped
    assert parse_message(sample("reactions_cleared.xml")).reactions == ()
    assert parse_message(sample("correction.xml")).reactions is None


async def test_groupchat_reactions_archive_each_key_added_and_each_taken_back() -> None:
    slot = Slot()
    slot.ids["sid-1"] = EventId("original")
    run = Run(slot)
    added = await run.feed(sample("reactions.xml"))
    assert reactions(added) == [("👍", False, "original"), ("🎉", False, "original")]
    first, second = added
    assert first.origin.remote_id == "sid-9"  # the update's own stanza-id
    assert second.origin.remote_id == "sid-9#1"  # distinct, so the core keeps both
    assert first.origin.sender.id == "alice@localhost"  # the real JID the room shows
    assert (first.origin.room, first.origin.direct) == (ROOM, False)

    swapped = await run.feed(with_keys(sample("reactions.xml"), "🎉", "🚀", sid="sid-11"))
    assert reactions(swapped) == [("🚀", False, "original"), ("👍", True, "original")]
    assert await run.feed(with_keys(sample("reactions.xml"), "🚀", "🎉", sid="sid-12")) == []
    cleared = await run.feed(sample("reactions_cleared.xml"))
    assert reactions(cleared) == [("🎉", True, "original"), ("🚀", True, "original")]
    await run.stop()


async def test_reaction_sets_survive_a_restart_so_a_removal_is_still_recognised() -> None:
    slot = Slot()
    slot.ids["sid-1"] = EventId("original")
    first = Run(slot)
    await first.feed(sample("reactions.xml"))
    await first.stop()

    second = Run(slot)  # a new process: only the state slot is left
    cleared = await second.feed(sample("reactions_cleared.xml"))
    assert reactions(cleared) == [("👍", True, "original"), ("🎉", True, "original")]
    await second.stop()
    third = Run(slot)
    replayed = await third.feed(sample("reactions_cleared.xml"))  # read again from MAM
    assert replayed == []
    await third.stop()


async def test_reaction_to_a_message_never_seen_is_not_archived() -> None:
    run = Run(Slot())
    assert await run.feed(sample("reactions.xml")) == []
    await run.stop()


def test_reaction_sets_stay_bounded_and_forget_empty_sets() -> None:
    sets = ReactionSets(limit=3)
    for n in range(5):
        sets.put("alice", f"m{n}", ("👍",))
    assert len(sets) == 3
    assert sets.get("alice", "m0") == ()  # the least recently changed went first
    sets.put("alice", "m4", ())
    assert len(sets) == 2
    again = ReactionSets.loads(sets.dumps(), limit=3)
    assert (again.get("alice", "m3"), again.get("alice", "m4")) == (("👍",), ())
    assert len(ReactionSets.loads("not json")) == 0
    assert LIMIT >= 1_000


def test_a_replayed_update_gets_the_same_remote_ids() -> None:
    origin = Origin(
        network="xm", room=ROOM, sender=Sender(id="a", name="a"), remote_id=RemoteId("s")
    )
    once = to_reactions(origin, EventId("m"), ("a",), ("b", "c"), ids=iter(map(EventId, "xyz")))
    again = to_reactions(origin, EventId("m"), ("a",), ("b", "c"), ids=iter(map(EventId, "uvw")))
    assert [r.origin.remote_id for r in once] == [r.origin.remote_id for r in again]
    assert [r.origin.remote_id for r in once] == ["s", "s#1", "s#2"]


async def test_chat_message_to_the_relay_is_a_private_message_answered_at_its_jid() -> None:
    run = Run(Slot())
    (event,) = await run.feed(sample("chat_private.xml"))
    assert isinstance(event, Message)
    assert event.text == "please forward this to the ops room"
    origin = event.origin
    assert origin.direct
    assert origin.room == "carol@localhost/phone"  # where the answer goes
    assert (origin.sender.id, origin.sender.name) == ("carol@localhost", "carol@localhost")
    # The relay's server's id, under the conversation: never the sender's forged one.
    assert origin.remote_id == "carol@localhost:acct-77"
    await run.stop()


async def test_correction_in_a_private_chat_edits_the_private_message() -> None:
    run = Run(Slot())
    (original,) = await run.feed(sample("chat_private.xml"))
    correction = ET.fromstring(  # noqa: S314 - a literal
        "<message xmlns='jabber:client' from='carol@localhost/phone' type='chat' id='3f20'>"
        "<body>please forward this to ops</body>"
        "<replace xmlns='urn:xmpp:message-correct:0' id='3f1e'/></message>"
    )
    (edit,) = await run.feed(correction)
    assert isinstance(edit, Edit)
    assert (edit.target, edit.origin.direct) == (original.id, True)
    await run.stop()


async def test_private_message_through_a_room_is_answered_at_the_occupant() -> None:
    run = Run(Slot())
    (event,) = await run.feed(sample("muc_private.xml"))
    assert isinstance(event, Message)
    assert event.origin.direct
    assert event.origin.room == f"{ROOM}/dave"
    assert event.origin.sender.name == "dave"
    assert event.origin.remote_id == f"{ROOM}/dave:pm-1"
    await run.stop()


@pytest.mark.parametrize("name", ["muc_invite.xml", "server_announce.xml", "chat_state_only.xml"])
async def test_invitations_announcements_and_chat_states_are_not_private_messages(
    name: str,
) -> None:
    run = Run(Slot())
    assert await run.feed(sample(name)) == []
    await run.stop()


async def test_private_messages_are_ignored_when_switched_off() -> None:
    run = Run(Slot(), direct_messages=False)
    assert await run.feed(sample("chat_private.xml"), sample("muc_private.xml")) == []
    await run.stop()


def test_own_account_and_the_room_itself_are_not_private_senders() -> None:
    rooms = {ROOM: "relay"}
    own = parse_message(sample("chat_private.xml"))
    assert private_message(own, own="carol@localhost", rooms=rooms) is None
    ours = ET.fromstring(  # noqa: S314 - a literal
        f"<message xmlns='jabber:client' from='{ROOM}/relay' type='chat'><body>x</body></message>"
    )
    assert private_message(parse_message(ours), own=RELAY, rooms=rooms) is None
    status = ET.fromstring(  # noqa: S314 - a literal
        f"<message xmlns='jabber:client' from='{ROOM}'><body>room is now public</body></message>"
    )
    assert private_message(parse_message(status), own=RELAY, rooms=rooms) is None


def test_the_answer_is_a_chat_message_to_the_sender_and_nothing_else_goes_to_a_person() -> None:
    notice = Message(
        id=EventId("n"),
        origin=Origin(
            network="xm",
            room="carol@localhost/phone",
            sender=Sender(id="imbridge", name="imbridge"),
            direct=True,
        ),
        text="This account is a relay.",
        kind=MessageKind.NOTICE,
    )
    element = to_wire(Outgoing(room=notice.origin.room, event=notice, txn_id="t"), identity=RELAY)
    assert (element.get("type"), element.get("to")) == ("chat", "carol@localhost/phone")
    assert element.findtext("{jabber:client}body") == "This account is a relay."
    origin_id = element.find("{urn:xmpp:sid:0}origin-id")
    assert origin_id is not None
    assert origin_id.get("id") == element.get("id")
    reaction = Reaction(id=EventId("r"), origin=notice.origin, target=EventId("m"), key="👍")
    with pytest.raises(PermanentSendError):
        to_wire(Outgoing(room=notice.origin.room, event=reaction, txn_id="u"), identity=RELAY)


def test_reaction_keys_keep_emoji_sequences_and_lose_direction_controls() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert reaction_keys([family, "\u202eok", "\x00", "a\nb"]) == (family, "ok", "a b")
    assert len(reaction_keys(str(n) for n in range(100))) == 32


async def test_private_message_through_a_room_the_relay_left_names_the_occupant() -> None:
    run = Run(Slot())
    run.adapter._rooms[ROOM].joined = False
    (event,) = await run.feed(sample("muc_private.xml"))
    assert event.origin.direct
    assert (event.origin.room, event.origin.sender.id) == (f"{ROOM}/dave", f"{ROOM}/dave")
    await run.stop()
