"""XMPP mentions (XEP-0372 References) and threads (XEP-0201 `<thread>`).

Mentions: a `<reference type='mention' uri='xmpp:room@service/nick' begin end/>` marks
the occupant a span of the body names; clients that read it (Conversations, Dino,
Gajim) notify that occupant. Outgoing, the occupants named in the sender's words (as
`imbridge.mentions.find` finds them, never in the sender prefix) or marked by the
sender's network get one each; incoming references become `Mention`s when their span
still fits the text the core keeps. `begin`/`end` count code points, as Python does.

Threads: the `<thread>` of a relayed message is the room's id of the thread's root (the
id the id map keeps for it), so every reply of one thread carries the same value after
a restart too, and a `<thread>` coming back from XMPP resolves to the root through the
same id map. Pure functions, no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from urllib.parse import quote, unquote

from imbridge.events import Edit, Mention, Message
from imbridge.mentions import Found, Names, explicit, merge

from .stanzas import NS_CLIENT, NS_REFERENCE, q
from .xmlsafe import xml_text


def occupant_uri(room: str, nick: str) -> str:
    """The `xmpp:` URI of an occupant (RFC 5122: the resource percent-encoded)."""
    return f"xmpp:{room}/{quote(nick, safe='')}"


def occupant_names(room: str, nicks: Iterable[str]) -> Names:
    """The occupants of `room` (by nick) indexed for `mentioned`, each meaning their
    occupant JID: a room keeps one and builds it again only when someone arrives,
    leaves or changes nick (in a room of thousands, building it is what costs)."""
    return Names({nick: f"{room}/{nick}" for nick in nicks})


def mentioned(event: Message | Edit, occupants: Names) -> list[Found]:
    """The `occupants` that `event` names, as (occupant JID) in text order."""
    own = [m for m in event.mentions if m.user in occupants.users]
    return merge(explicit(own, event.body_start), occupants.find(event.text, event.body_start))


def add_references(
    message: ET.Element, event: Message | Edit, room: str, occupants: Names, *, offset: int = 0
) -> None:
    """Appends a mention reference for each occupant `event` names; `offset` is where
    the event's text starts in the body (after a `/me `)."""
    for f in mentioned(event, occupants):
        _, _, nick = f.user.partition("/")
        ET.SubElement(message, f"{{{NS_REFERENCE}}}reference", {
            "type": "mention", "uri": xml_text(occupant_uri(room, nick)),
            "begin": str(f.start + offset), "end": str(f.end + offset),
        })  # fmt: skip


def to_mentions(
    refs: tuple[tuple[str, int, int], ...], text: str, network: str
) -> tuple[Mention, ...]:
    """The core's mentions for references into `text` (the body as the core keeps it);
    a span outside it, or empty, is dropped."""
    out = []
    for uri, begin, end in refs:
        user = unquote(uri.removeprefix("xmpp:")).split("?", 1)[0]
        if user and 0 <= begin < end <= len(text) and text[begin:end].strip():
            out.append(Mention(network=network, user=user, name=text[begin:end], start=begin,
                               end=end))  # fmt: skip
    return tuple(out)


def add_thread(message: ET.Element, thread: str) -> None:
    ET.SubElement(message, q(NS_CLIENT, "thread")).text = xml_text(thread)
