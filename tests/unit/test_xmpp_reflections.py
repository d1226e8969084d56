"""The relay's own copies, as their reflections come back: a reaction that names a copy
right after its reflection finds its target, though the outbox has not yet written the
delivery to the id map (it does so a few loop turns after the reflection confirms it)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from imbridge.adapters.xmpp import XmppAdapter, XmppConfig
from imbridge.adapters.xmpp.proto.stanzas import NS_REACTIONS, NS_SID
from imbridge.adapters.xmpp.rooms import Room
from imbridge.events import Event, EventId, Reaction
from imbridge.testing import DictCursors

ROOM = "b@muc.example.org"
CONFIG = {"type": "xmpp", "jid": "relay@example.org", "password": "pw", "nick": "relay"}


def groupchat(nick: str, stanza_id: str, *, origin_id: str | None = None) -> ET.Element:
    message = ET.Element("message", {"from": f"{ROOM}/{nick}", "type": "groupchat"})
    if origin_id is not None:
        message.set("id", origin_id)
        ET.SubElement(message, f"{{{NS_SID}}}origin-id", {"id": origin_id})
    ET.SubElement(message, f"{{{NS_SID}}}stanza-id", {"id": stanza_id, "by": ROOM})
    return message


async def test_a_reaction_right_after_the_copys_reflection_names_the_copys_event() -> None:
    cursors = DictCursors()  # the id map holds nothing yet: the record is still queued
    adapter = XmppAdapter("xm", XmppConfig.model_validate(CONFIG), cursors)
    received: list[Event] = []

    async def sink(event: Event) -> None:
        received.append(event)

    receiver = adapter._receiver
    receiver.open(sink)
    room = Room(jid=ROOM, wanted_nick="relay", joined=True)
    room.arrived("bob", None)
    adapter._rooms[ROOM] = room
    sent = adapter._delivery.track("imb-1", ROOM, generation=1, now=0.0, event_id=EventId("ev"))

    reflection = groupchat("relay", "sid-copy", origin_id="imb-1")
    ET.SubElement(reflection, "body").text = "ship it"
    await receiver.message(reflection)
    reaction = groupchat("bob", "sid-reaction")
    held = ET.SubElement(reaction, f"{{{NS_REACTIONS}}}reactions", {"id": "sid-copy"})
    ET.SubElement(held, f"{{{NS_REACTIONS}}}reaction").text = "👍"
    await receiver.message(reaction)
    await receiver.drain()

    assert await sent.future == "sid-copy"  # the outbox learns the delivery
    assert [(type(e), getattr(e, "target", None), getattr(e, "key", None)) for e in received] == [
        (Reaction, "ev", "👍")
    ]
