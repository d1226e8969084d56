"""A Matrix pill reaches IRC as the nick it means: the line an IRC client highlights."""

from __future__ import annotations

from typing import Any

from imbridge.adapter import Capabilities
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.proto.mentions import with_nicks
from imbridge.adapters.irc.proto.translate import to_wire
from imbridge.adapters.matrix.proto.translate import parse_event, to_core
from imbridge.events import Edit, EventId, Message
from imbridge.policy import Destination
from imbridge.render import as_correction, render
from imbridge.router import Route

IRC = Capabilities(edits=False, deletes=False, replies=False, attachments=False,
                   formatting="irc", max_text_bytes=400)  # fmt: skip
ROUTE = Route("g", Destination("irc", "#c"), "<{nick}@{network}> ")


def line_on_irc(formatted_body: str, body: str, nicks: set[str]) -> str:
    source: dict[str, Any] = {
        "type": "m.room.message", "event_id": "$e", "sender": "@alice:hs",
        "content": {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
                    "formatted_body": formatted_body},
    }  # fmt: skip
    parsed = parse_event(source, "http://hs")
    assert parsed is not None
    event = to_core(parsed, event_id=EventId("e"), network="mx", room="!r", sender_name="alice")
    assert isinstance(event, Message)
    shown = render(event, ROUTE, IRC)
    assert isinstance(shown, Message)
    out = to_wire(with_nicks(shown, nicks), "#c", mask=Mask("relay"))
    return out.lines[0]


def test_a_pill_of_a_nick_in_the_channel_is_that_nick_without_a_link() -> None:
    line = line_on_irc('<a href="https://matrix.to/#/@irc_dave:hs">dave</a>: ready?',
                       "dave: ready?", {"dave"})  # fmt: skip
    assert line == "PRIVMSG #c :<alice@mx> dave: ready?"


def test_a_pill_showing_a_display_name_becomes_the_nick_it_means() -> None:
    line = line_on_irc('<a href="https://matrix.to/#/@irc_dave:hs">Dave (IRC)</a>: ready?',
                       "Dave (IRC): ready?", {"dave"})  # fmt: skip
    assert line == "PRIVMSG #c :<alice@mx> dave: ready?"


def test_a_pill_of_someone_not_in_the_channel_keeps_their_name() -> None:
    line = line_on_irc('<a href="https://matrix.to/#/@erin:hs">Erin</a>: hi',
                       "Erin: hi", {"dave"})  # fmt: skip
    assert line == "PRIVMSG #c :<alice@mx> Erin: hi"


def test_a_corrected_pill_still_reaches_irc_as_the_nick() -> None:
    source: dict[str, Any] = {
        "type": "m.room.message", "event_id": "$f", "sender": "@alice:hs",
        "content": {"msgtype": "m.text", "body": "* Dave (IRC): now?",
                    "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
                    "m.new_content": {"msgtype": "m.text", "body": "Dave (IRC): now?",
                                      "format": "org.matrix.custom.html",
                                      "formatted_body": '<a href="https://matrix.to/#/'
                                                        '@irc_dave:hs">Dave (IRC)</a>: now?'}},
    }  # fmt: skip
    parsed = parse_event(source, "http://hs")
    assert parsed is not None
    edit = to_core(parsed, event_id=EventId("f"), network="mx", room="!r", sender_name="alice",
                   target=EventId("e"))  # fmt: skip
    rendered = render(edit, ROUTE, IRC) if edit is not None else None
    assert isinstance(rendered, Edit)  # the outbox words it when it sends it
    shown = as_correction(rendered, IRC)
    assert isinstance(shown, Message)
    out = to_wire(with_nicks(shown, {"dave"}), "#c", mask=Mask("relay"))
    assert out.lines[0] == "PRIVMSG #c :* corrected: <alice@mx> dave: now?"
