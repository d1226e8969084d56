"""Matrix pills, `m.mentions` and `m.thread` ⇄ the core, on wire JSON as clients send it."""

from __future__ import annotations

from typing import Any

from imbridge.adapter import Outgoing
from imbridge.adapters.matrix.proto.mentions import Members, with_mentions
from imbridge.adapters.matrix.proto.translate import SendWire, parse_event, to_core, to_wire
from imbridge.events import EventId, Mention, Message, Origin, RemoteId, Sender

HS = "http://127.0.0.1:8008"
IRC = Origin(network="irc", room="#c", sender=Sender(id="carol", name="carol"))


def incoming(content: dict[str, Any]) -> Message:
    source = {"type": "m.room.message", "event_id": "$e", "sender": "@alice:hs",
              "origin_server_ts": 1, "content": content}  # fmt: skip
    parsed = parse_event(source, HS)
    assert parsed is not None
    event = to_core(parsed, event_id=EventId("e"), network="mx", room="!r", sender_name="Alice",
                    thread=EventId("root") if parsed.thread else None)  # fmt: skip
    assert isinstance(event, Message)
    return event


def test_a_pill_becomes_a_mention_of_its_user_over_its_name_without_the_link() -> None:
    msg = incoming({
        "msgtype": "m.text", "body": "dave: ready?", "format": "org.matrix.custom.html",
        "formatted_body": '<a href="https://matrix.to/#/@irc_dave:hs">dave</a>: ready?',
        "m.mentions": {"user_ids": ["@irc_dave:hs"]},
    })  # fmt: skip
    assert msg.mentions == (Mention(network="mx", user="@irc_dave:hs", name="dave", start=0,
                                    end=4),)  # fmt: skip
    assert msg.rich == "dave: ready?"  # no matrix.to URL for other networks to show


def test_a_link_to_a_room_stays_a_link() -> None:
    msg = incoming({
        "msgtype": "m.text", "body": "see #ops", "format": "org.matrix.custom.html",
        "formatted_body": 'see <a href="https://matrix.to/#/#ops:hs">#ops</a>',
    })  # fmt: skip
    assert msg.mentions == ()
    assert msg.rich is not None
    assert "matrix.to" in msg.rich


def test_a_thread_message_names_its_root_and_not_its_fallback_as_a_reply() -> None:
    msg = incoming({
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
                         "m.in_reply_to": {"event_id": "$last"}},
    })  # fmt: skip
    assert (msg.thread, msg.reply_to) == ("root", None)


def test_a_threaded_message_goes_out_in_the_thread_with_a_reply_fallback() -> None:
    msg = Message(id=EventId("e"), origin=IRC, text="me too", thread=EventId("root"))
    wire = to_wire(Outgoing(room="!r", event=msg, thread=RemoteId("$root"), txn_id="t"))
    assert isinstance(wire, SendWire)
    assert wire.content["m.relates_to"] == {
        "rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root"},
    }  # fmt: skip


def test_an_irc_line_naming_a_member_pings_them_and_the_prefix_pings_nobody() -> None:
    # carol on IRC is relayed as "<bob@irc> ...": a Matrix member named bob must not be
    # pinged by the prefix, only by the words after it.
    origin = Origin(network="irc", room="#c", sender=Sender(id="bob", name="bob"))
    text = "<bob@irc> Alice: lunch?"
    msg = Message(id=EventId("e"), origin=origin, text=text, body_start=10)
    members = {"@alice:hs": "Alice", "@bob:hs": "bob"}
    content = with_mentions({"msgtype": "m.text", "body": text}, msg, Members.of(members))
    assert content["m.mentions"] == {"user_ids": ["@alice:hs"]}
    assert content["formatted_body"] == (
        '&lt;bob@irc&gt; <a href="https://matrix.to/#/@alice:hs">Alice</a>: lunch?'
    )


def test_a_message_naming_no_member_still_says_it_mentions_nobody() -> None:
    msg = Message(id=EventId("e"), origin=IRC, text="<bob@irc> hi all", body_start=10)
    content = with_mentions(
        {"msgtype": "m.text", "body": msg.text}, msg, Members.of({"@bob:hs": "bob"})
    )
    assert content["m.mentions"] == {}
    assert "formatted_body" not in content


def test_a_pill_in_formatted_text_keeps_the_formatting() -> None:
    msg = Message(id=EventId("e"), origin=IRC, text="<c@irc> hi alice", body_start=8)
    content = {"msgtype": "m.text", "body": msg.text, "format": "org.matrix.custom.html",
               "formatted_body": "&lt;c@irc&gt; <b>hi</b> alice"}  # fmt: skip
    out = with_mentions(content, msg, Members.of({"@alice:hs": "Alice"}))
    assert out["formatted_body"] == (
        '&lt;c@irc&gt; <b>hi</b> <a href="https://matrix.to/#/@alice:hs">alice</a>'
    )


def test_a_pill_whose_body_shows_the_user_id_spans_the_id() -> None:
    msg = incoming({
        "msgtype": "m.text", "body": "@bob:hs look", "format": "org.matrix.custom.html",
        "formatted_body": '<a href="https://matrix.to/#/%40bob%3Ahs">Bob</a> look',
    })  # fmt: skip
    assert [(m.user, m.name) for m in msg.mentions] == [("@bob:hs", "@bob:hs")]
