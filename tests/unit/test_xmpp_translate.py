"""XMPP translation: recorded stanzas to core events, core events to stanzas, and the
promise that any text from any network yields a well-formed stanza."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.xmlstream import tostring

from imbridge.adapter import Outgoing
from imbridge.adapters.xmpp.proto.stanzas import parse_archived, parse_message, parse_presence
from imbridge.adapters.xmpp.proto.translate import (
    Inbound,
    Occupancy,
    origin_id,
    presence_to_core,
    references,
    to_core,
    to_wire,
)
from imbridge.adapters.xmpp.proto.xmlsafe import is_xml_text, xml_nick, xml_text
from imbridge.errors import PermanentSendError
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    EventId,
    Join,
    Kick,
    Leave,
    Message,
    MessageKind,
    NickChange,
    Origin,
    RemoteId,
    RichText,
    Sender,
    Topic,
)

DATA = Path(__file__).parent.parent / "data" / "xmpp"
ROOM = "room@conference.localhost"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ORIGIN = Origin(network="irc", room="#ops", sender=Sender(id="alice", name="alice"))


def sample(name: str) -> ET.Element:
    return ET.fromstring((DATA / name).read_text())  # noqa: S314 - our recorded samples


def ctx(**resolved: str) -> Inbound:
    return Inbound(
        network="xm",
        event_id=EventId("new"),
        sender_id="s",
        resolved={k: EventId(v) for k, v in resolved.items()},
        now=NOW,
    )


def on_the_wire(element: ET.Element) -> ET.Element:
    """The stanza as a server parses it: exactly what slixmpp writes on the stream,
    read by expat inside a stream whose default namespace is jabber:client."""
    text = str(tostring(element, xmlns="jabber:client", top_level=True))
    return ET.fromstring(f"<stream xmlns='jabber:client'>{text}</stream>")[0]  # noqa: S314 - stanzas we built


def test_formatted_message_keeps_safe_formatting_and_room_stanza_id() -> None:
    wire = parse_message(sample("message_xhtml.xml"))
    assert wire.stanza_id == "sid-1"  # the forged stanza-id of another `by` is ignored
    event = to_core(wire, ctx())
    assert isinstance(event, Message)
    assert event.text == "hello bold"
    assert event.origin.remote_id == "sid-1"
    assert event.rich is not None
    assert "<strong>bold</strong>" in event.rich
    assert "<u>u</u>" in event.rich
    for bad in ("script", "evil", "javascript", "<img"):
        assert bad not in event.rich


def test_correction_of_known_message_is_an_edit_and_of_unknown_a_message() -> None:
    wire = parse_message(sample("correction.xml"))
    assert references(wire) == ("m1",)
    edit = to_core(wire, ctx(m1="orig"))
    assert isinstance(edit, Edit)
    assert (edit.target, edit.text) == ("orig", "hello again")
    assert isinstance(to_core(wire, ctx()), Message)


def test_retraction_and_moderation_delete_known_targets_only() -> None:
    for name in ("retraction.xml", "moderation_v0.xml"):
        wire = parse_message(sample(name))
        assert wire.retract_id == "sid-1"
        delete = to_core(wire, ctx(**{"sid-1": "orig"}))
        assert isinstance(delete, Delete)
        assert delete.target == "orig"
        assert to_core(wire, ctx()) is None
    assert parse_message(sample("moderation_v0.xml")).moderated


def test_reply_drops_the_quoted_fallback_and_points_at_the_original() -> None:
    event = to_core(parse_message(sample("reply.xml")), ctx(**{"sid-1": "orig"}))
    assert isinstance(event, Message)
    assert (event.text, event.reply_to) == ("yes!", "orig")


def test_oob_link_becomes_an_attachment() -> None:
    event = to_core(parse_message(sample("oob.xml")), ctx())
    assert isinstance(event, Message)
    assert event.text == ""
    assert event.attachments == (
        Attachment(url="https://upload.localhost/abc/cat.png", name="a cat"),
    )


def test_archived_message_carries_archive_id_stamp_and_relay_marker() -> None:
    wire = parse_archived(sample("mam_result.xml"))
    assert wire is not None
    assert (wire.stanza_id, wire.nick, wire.body) == ("sid-9", "dave", "while you were away")
    assert wire.stamp is not None
    assert wire.stamp.year == 2026
    event = to_core(wire, ctx())
    assert event is not None
    assert event.origin.relayed  # another bridge relayed it: never relay it again


def test_a_stanza_read_twice_is_the_same_event_dated_when_it_was_read() -> None:
    """The translator creates no id and reads no clock: a live message without a delay
    stamp is dated at the time the adapter read it, and a replay gives the same event."""
    wire = parse_message(sample("message_xhtml.xml"))
    assert wire.stamp is None
    first, again = to_core(wire, ctx()), to_core(wire, ctx())
    assert first == again
    assert first is not None
    assert (first.id, first.origin.timestamp) == ("new", NOW)


def test_occupants_arriving_leaving_and_renamed_are_joins_and_leaves() -> None:
    def occupancy(*, known: bool) -> Occupancy:
        return Occupancy(network="xm", event_id=EventId("p"), sender_id="s", known=known)

    def presence(kind: str, *codes: str, new_nick: str = "") -> ET.Element:
        element = ET.Element("{jabber:client}presence", {"from": f"{ROOM}/carol"})
        if kind != "available":
            element.set("type", kind)
        x = ET.SubElement(element, "{http://jabber.org/protocol/muc#user}x")
        ET.SubElement(x, "{http://jabber.org/protocol/muc#user}item", {"nick": new_nick})
        for code in codes:
            ET.SubElement(x, "{http://jabber.org/protocol/muc#user}status", {"code": code})
        return element

    arrived = presence_to_core(parse_presence(presence("available")), occupancy(known=False))
    assert isinstance(arrived, Join)
    assert (arrived.id, arrived.origin.room, arrived.origin.sender.name) == ("p", ROOM, "carol")
    assert presence_to_core(parse_presence(presence("available")), occupancy(known=True)) is None
    renamed = parse_presence(presence("unavailable", "303", new_nick="caz"))
    change = presence_to_core(renamed, occupancy(known=True))
    assert isinstance(change, NickChange)
    assert (change.origin.sender.name, change.new_name) == ("carol", "caz")
    left = presence_to_core(parse_presence(presence("unavailable")), occupancy(known=True))
    assert isinstance(left, Leave)
    unseen = parse_presence(presence("unavailable"))
    assert presence_to_core(unseen, occupancy(known=False)) is None


def test_kick_presence_is_read_with_its_status_codes() -> None:
    presence = parse_presence(sample("presence_kick.xml"))
    assert (presence.nick, presence.type) == ("relay", "unavailable")
    assert {307, 110} <= presence.codes
    assert presence.reason == "bye"
    kick = presence_to_core(presence, Occupancy(network="xm", event_id=EventId("k"),
                                                sender_id="s", known=True))  # fmt: skip
    assert isinstance(kick, Kick)
    assert (kick.origin.sender.name, kick.reason) == ("relay", "bye")


def test_emote_round_trips_as_me() -> None:
    item = Outgoing(
        room=ROOM,
        txn_id="t1",
        event=Message(
            id=EventId("e"), origin=ORIGIN, text="<alice@irc> waves", kind=MessageKind.EMOTE
        ),
    )
    element = to_wire(item, identity="relay@localhost")
    assert element.findtext("{jabber:client}body") == "/me <alice@irc> waves"
    element.set("from", f"{ROOM}/relay")  # as the room reflects it
    back = to_core(parse_message(element), ctx())
    assert isinstance(back, Message)
    assert back.kind is MessageKind.EMOTE


def test_outgoing_ids_are_stable_per_txn_and_carry_the_relay_marker() -> None:
    item = Outgoing(
        room=ROOM, txn_id="t1", event=Message(id=EventId("e"), origin=ORIGIN, text="hi")
    )
    first, again = to_wire(item, identity="r@l"), to_wire(item, identity="r@l")
    assert first.get("id") == again.get("id") == origin_id("t1")
    assert first.find("{urn:xmpp:sid:0}origin-id") is not None
    marker = first.find("{urn:imbridge:relay:0}relay")
    assert marker is not None
    assert marker.get("by") == "r@l"


def test_edit_delete_topic_build_their_xeps() -> None:
    edit = Outgoing(
        room=ROOM,
        txn_id="t2",
        target=RemoteId("sid-1"),
        event=Edit(id=EventId("e2"), origin=ORIGIN, target=EventId("e"), text="x"),
    )
    replace = to_wire(edit, identity="r", replace_id="imb-1").find(
        "{urn:xmpp:message-correct:0}replace"
    )
    assert replace is not None
    assert replace.get("id") == "imb-1"
    delete = Outgoing(
        room=ROOM,
        txn_id="t3",
        target=RemoteId("sid-1"),
        event=Delete(id=EventId("e3"), origin=ORIGIN, target=EventId("e")),
    )
    retract = to_wire(delete, identity="r").find("{urn:xmpp:message-retract:1}retract")
    assert retract is not None
    assert retract.get("id") == "sid-1"
    topic = Outgoing(
        room=ROOM, txn_id="t4", event=Topic(id=EventId("e4"), origin=ORIGIN, text="news")
    )
    assert to_wire(topic, identity="r").findtext("{jabber:client}subject") == "news"
    with pytest.raises(PermanentSendError):
        to_wire(
            Outgoing(room=ROOM, txn_id="t5", event=Join(id=EventId("j"), origin=ORIGIN)),
            identity="r",
        )


def test_every_c0_control_and_a_lone_surrogate_leave_a_readable_valid_stanza() -> None:
    hostile = "".join(chr(c) for c in range(32)) + "ok \udcff end\ufffe\uffff"
    item = Outgoing(
        room=ROOM, txn_id="t", event=Message(id=EventId("e"), origin=ORIGIN, text=hostile)
    )
    parsed = on_the_wire(to_wire(item, identity="r"))
    text = parsed.findtext("{jabber:client}body")
    assert text is not None
    assert "ok \ufffd end" in text
    assert is_xml_text(text)


def test_nicks_lose_bidi_overrides_and_zero_width_characters() -> None:
    assert xml_nick("evil\u202egnp.exe\u200b") == "evilgnp.exe"
    assert xml_nick("\x00") == "?"


# Any code point, surrogates and noncharacters included.
ANY_TEXT = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), min_size=1
)
RICH = st.lists(
    st.sampled_from(["<b>", "</b>", "<a href='x'>", "</a>", "<br>", "<u>", "&lt;", "<script>"])
    | ANY_TEXT,
    max_size=4,
).map("".join)
KINDS = list(MessageKind)


@settings(max_examples=10_000, deadline=None)
@given(text=ANY_TEXT, rich=RICH, which=st.integers(0, 3))
def test_any_text_builds_a_well_formed_stanza(text: str, rich: str, which: int) -> None:
    nick = text[:20]
    origin = Origin(network="n", room="r", sender=Sender(id=nick, name=nick))
    event: Message | Edit | Delete | Topic
    if which == 0:
        event = Message(
            id=EventId(nick),
            origin=origin,
            text=text,
            rich=RichText(rich),
            kind=KINDS[len(text) % 3],
            attachments=(Attachment(url=text, name=nick),),
        )
    elif which == 1:
        event = Edit(
            id=EventId("e"), origin=origin, target=EventId("t"), text=text, rich=RichText(rich)
        )
    elif which == 2:
        event = Delete(id=EventId("e"), origin=origin, target=EventId("t"))
    else:
        event = Topic(id=EventId("e"), origin=origin, text=text)
    item = Outgoing(
        room=nick, txn_id=text, event=event, target=RemoteId(nick), reply_to=RemoteId(nick)
    )
    element = to_wire(item, identity=nick, replace_id=nick)
    parsed = on_the_wire(element)  # expat rejects anything not XML 1.0
    if which in (0, 1):
        got = parsed.findtext("{jabber:client}body") or ""
        assert xml_text(text) in got
