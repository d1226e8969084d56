"""XMPP XEP-0372 mentions and XEP-0201 threads ⇄ the core, through the stanza as a
server would parse it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from slixmpp.xmlstream import tostring

from imbridge.adapter import Outgoing
from imbridge.adapters.xmpp.proto.mentions import occupant_names
from imbridge.adapters.xmpp.proto.stanzas import parse_message
from imbridge.adapters.xmpp.proto.translate import Inbound, references, to_core, to_wire
from imbridge.adapters.xmpp.rooms import Room
from imbridge.events import EventId, Mention, Message, MessageKind, Origin, RemoteId, Sender

ROOM = "room@conference.localhost"
REF = "{urn:xmpp:reference:0}reference"
ORIGIN = Origin(network="irc", room="#ops", sender=Sender(id="bob", name="bob"))


def on_the_wire(element: ET.Element) -> ET.Element:
    text = str(tostring(element, xmlns="jabber:client", top_level=True))
    return ET.fromstring(f"<stream xmlns='jabber:client'>{text}</stream>")[0]  # noqa: S314 - built here


def ctx(**resolved: str) -> Inbound:
    return Inbound(network="xm", event_id=EventId("new"), sender_id="s",
                   resolved={k: EventId(v) for k, v in resolved.items()},
                   now=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip


def test_an_occupant_named_after_the_prefix_gets_a_mention_reference() -> None:
    msg = Message(id=EventId("e"), origin=ORIGIN, text="<bob@irc> Juliet: hi", body_start=10)
    here = occupant_names(ROOM, ["juliet", "bob", "romeo"])
    element = on_the_wire(to_wire(Outgoing(room=ROOM, event=msg, txn_id="t"), identity="r@l",
                                  occupants=here))  # fmt: skip
    refs = element.findall(REF)
    assert [(r.get("type"), r.get("uri"), r.get("begin"), r.get("end")) for r in refs] == [
        ("mention", f"xmpp:{ROOM}/juliet", "10", "16")
    ]  # bob the occupant is not pinged by the relayed bob's prefix


def test_an_emote_counts_its_me_in_the_offsets() -> None:
    msg = Message(id=EventId("e"), origin=ORIGIN, text="waves at romeo", kind=MessageKind.EMOTE)
    element = to_wire(Outgoing(room=ROOM, event=msg, txn_id="t"), identity="r@l",
                      occupants=occupant_names(ROOM, ["romeo"]))  # fmt: skip
    body = element.findtext("{jabber:client}body") or ""
    (ref,) = element.findall(REF)
    assert body[int(ref.get("begin", "")) : int(ref.get("end", ""))] == "romeo"


def test_an_incoming_reference_is_a_mention_over_its_span() -> None:
    element = ET.fromstring(  # noqa: S314 - literal
        f"<message xmlns='jabber:client' type='groupchat' from='{ROOM}/romeo' id='m1'>"
        "<body>hey carol, ready?</body>"
        "<reference xmlns='urn:xmpp:reference:0' type='mention' begin='4' end='9'"
        f" uri='xmpp:{ROOM}/carol'/></message>"
    )
    event = to_core(parse_message(element), ctx())
    assert isinstance(event, Message)
    assert event.mentions == (Mention(network="xm", user=f"{ROOM}/carol", name="carol",
                                      start=4, end=9),)  # fmt: skip


def test_a_thread_goes_out_as_the_roots_id_and_comes_back_as_the_root() -> None:
    msg = Message(id=EventId("e"), origin=ORIGIN, text="in thread", thread=EventId("root"))
    item = Outgoing(room=ROOM, event=msg, thread=RemoteId("sid-root"), txn_id="t")
    element = on_the_wire(to_wire(item, identity="r@l"))
    assert element.findtext("{jabber:client}thread") == "sid-root"
    element.set("from", f"{ROOM}/juliet")
    wire = parse_message(element)
    assert "sid-root" in references(wire)
    event = to_core(wire, ctx(**{"sid-root": "root"}))
    assert isinstance(event, Message)
    assert event.thread == "root"


def test_a_room_indexes_its_occupants_once_until_someone_comes_or_goes() -> None:
    room = Room(jid=ROOM, wanted_nick="relay")
    for nick in ("relay", "romeo"):
        room.arrived(nick, None)
    index = room.names()
    assert room.names() is index  # the same for every message while nobody moves
    assert [f.user for f in index.find("hi romeo")] == [f"{ROOM}/romeo"]
    room.arrived("juliet", None)
    found = room.names().find("juliet and romeo")
    assert [f.user for f in found] == [f"{ROOM}/juliet", f"{ROOM}/romeo"]
    room.left("romeo")
    assert room.names().find("romeo?") == []
    assert room.names().find("relay, hello") == []  # never the relay itself
