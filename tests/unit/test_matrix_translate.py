"""Matrix JSON ⇄ core events on recorded wire samples (tests/data/matrix/events.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapter import Outgoing
from imbridge.adapters.matrix.proto.translate import (
    RELAY_KEY,
    ParsedEvent,
    RedactWire,
    SendWire,
    media_url,
    mxc_parts,
    parse_event,
    strip_reply_fallback,
    to_core,
    to_wire,
)
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    EventId,
    Kick,
    Leave,
    Message,
    MessageKind,
    Origin,
    RemoteId,
    RichText,
    Sender,
    Topic,
    new_event_id,
)

HS = "http://127.0.0.1:8008"
SAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "data" / "matrix" / "events.json").read_text()
)


def parsed(name: str) -> ParsedEvent:
    result = parse_event(SAMPLES[name], HS)
    assert result is not None, name
    return result


def core(name: str, **kw: Any) -> Any:
    return to_core(parsed(name), event_id=new_event_id(), network="mx", room="!r",
                   sender_name="Alice", **kw)  # fmt: skip


def test_text_is_cleaned_of_controls_and_crlf() -> None:
    msg = core("text")
    assert isinstance(msg, Message)
    assert msg.text == "hello\nworld"
    assert msg.origin.remote_id == "$t1"
    assert msg.origin.timestamp.year == 2023


@pytest.mark.parametrize(
    ("name", "kind"), [("emote", MessageKind.EMOTE), ("notice", MessageKind.NOTICE)]
)
def test_emote_and_notice_keep_their_kind(name: str, kind: MessageKind) -> None:
    assert parsed(name).kind is kind


def test_html_is_reduced_to_the_safe_neutral_subset() -> None:
    rich = parsed("html").rich
    assert rich is not None
    assert "<p><b>Title</b></p>" in rich
    for bad in ("onclick", "onerror", "<img", "javascript", "<script", "alert(2)", "<font"):
        assert bad not in rich
    assert "<strong>bold</strong>" in rich
    assert "red" in rich


def test_markup_without_body_is_reduced_to_text_not_dropped() -> None:
    inbound = parsed("html_only_markup")
    assert inbound.text == "only html"
    assert inbound.rich == "<p>only <i>html</i></p>"


def test_broken_html_still_yields_the_message() -> None:
    inbound = parsed("broken_html")
    assert inbound.text == "fallback"
    assert inbound.rich is not None
    assert "unclosed" in inbound.rich


def test_edit_targets_the_original_or_becomes_a_new_message() -> None:
    edit = core("edit", target=EventId("core-1"))
    assert isinstance(edit, Edit)
    assert edit.target == "core-1"
    assert edit.text == "fixed"
    assert parsed("edit").target == "$t1"
    unknown = core("edit")
    assert isinstance(unknown, Message)
    assert unknown.text == "fixed"


def test_reply_strips_the_quoted_fallback_in_text_and_html() -> None:
    inbound = parsed("reply")
    assert inbound.reply_to == "$t1"
    assert inbound.text == "sounds good"
    assert inbound.rich == "sounds <em>good</em>"
    assert "confidential" not in inbound.text + str(inbound.rich)


def test_thread_fallback_is_not_a_reply() -> None:
    assert parsed("thread_fallback").reply_to is None


@pytest.mark.parametrize("name", ["redaction", "redaction_v11"])
def test_redaction_becomes_delete_only_when_target_known(name: str) -> None:
    assert parsed(name).target == "$t1"
    assert isinstance(core(name, target=EventId("core-1")), Delete)
    assert core(name) is None


def test_media_becomes_an_attachment_with_http_url() -> None:
    msg = core("image")
    assert isinstance(msg, Message)
    assert msg.attachments == (
        Attachment(url=f"{HS}/_matrix/media/v3/download/localhost/abcDEF", name="cat.png",
                   mimetype="image/png", size=1234),
    )  # fmt: skip
    assert msg.text == ""
    captioned = parsed("image_caption")
    assert captioned.text == "see the report"
    assert captioned.attachments[0].name == "report.pdf"


@pytest.mark.parametrize(
    "name", ["image_bad_url", "encrypted", "rename", "redacted_message", "no_sender",
             "body_not_string"],
)  # fmt: skip
def test_ignored_or_malformed_events_give_none(name: str) -> None:
    assert parse_event(SAMPLES[name], HS) is None


def test_relay_marker_sets_relayed() -> None:
    assert parsed("relayed").relayed
    assert not parsed("text").relayed


def test_membership_and_topic() -> None:
    assert parsed("join").action == "join"
    leave = core("leave")
    assert isinstance(leave, Leave)
    assert leave.reason == "bye\u202e"  # text, not a nick: kept, controls only are dropped
    assert isinstance(core("topic"), Topic)


def test_a_leave_sent_by_someone_else_is_a_kick_of_the_member() -> None:
    kicked = {**SAMPLES["leave"], "sender": "@mod:localhost", "state_key": "@bob:localhost"}
    inbound = parse_event(kicked, HS)
    assert inbound is not None
    assert (inbound.action, inbound.sender, inbound.by) == (
        "kick",
        "@bob:localhost",
        "@mod:localhost",
    )
    kick = to_core(inbound, event_id=new_event_id(), network="mx", room="!r", sender_name="Bob")
    assert isinstance(kick, Kick)
    assert (kick.origin.sender.id, kick.by, kick.reason) == ("@bob:localhost", "@mod:localhost",
                                                             "bye\u202e")  # fmt: skip


def test_strip_reply_fallback_leaves_normal_quotes_alone_without_reply() -> None:
    assert strip_reply_fallback("no quote") == "no quote"
    assert strip_reply_fallback("> a\n> b\n\nc\nd") == "c\nd"


def test_media_url_refuses_path_tricks() -> None:
    assert media_url(HS, "mxc://srv/id") == f"{HS}/_matrix/media/v3/download/srv/id"
    for bad in ("mxc://srv/a/b", "mxc:///id", "mxc://srv/", "http://x/y", "mxc://../x",
                "mxc://./x", "mxc://srv/%2e%2e", "mxc://srv/a?b", "mxc://a b/x"):  # fmt: skip
        assert media_url(HS, bad) is None
    assert mxc_parts("mxc://[::1]:8448/Ab_-9") == ("[::1]:8448", "Ab_-9")


def test_media_go_through_the_linker_when_the_bridge_serves_them() -> None:
    calls: list[tuple[str, str, str]] = []

    def link(server: str, media_id: str, name: str) -> str:
        calls.append((server, media_id, name))
        return f"https://bridge.example/media/{server}/{media_id}/{name}"

    inbound = parse_event(SAMPLES["image"], HS, link=link)
    assert inbound is not None
    assert calls == [("localhost", "abcDEF", "cat.png")]
    assert inbound.attachments[0].url == "https://bridge.example/media/localhost/abcDEF/cat.png"
    assert parse_event(SAMPLES["image_bad_url"], HS, link=link) is None
    assert len(calls) == 1


ORIGIN = Origin(network="irc", room="#a", sender=Sender(id="carol", name="carol"))


def test_outgoing_message_carries_html_reply_and_marker() -> None:
    event = Message(id=EventId("ev1"), origin=ORIGIN, text="<carol> hi",
                    rich=RichText("&lt;carol&gt; <b>hi</b>"), kind=MessageKind.EMOTE)  # fmt: skip
    wire = to_wire(Outgoing(room="!r", event=event, reply_to=RemoteId("$orig"), txn_id="t"))
    assert isinstance(wire, SendWire)
    assert wire.content == {
        "msgtype": "m.emote", "body": "<carol> hi", "format": "org.matrix.custom.html",
        "formatted_body": "&lt;carol&gt; <b>hi</b>",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$orig"}},
        RELAY_KEY: {"network": "irc", "event": "ev1"},
    }  # fmt: skip


def test_outgoing_edit_replaces_target_or_is_sent_anew() -> None:
    edit = Edit(id=EventId("ev2"), origin=ORIGIN, target=EventId("ev1"), text="v2")
    wire = to_wire(Outgoing(room="!r", event=edit, target=RemoteId("$sent"), txn_id="t"))
    assert isinstance(wire, SendWire)
    assert wire.content["m.new_content"] == {"msgtype": "m.text", "body": "v2"}
    assert wire.content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$sent"}
    assert wire.content["body"] == "* v2"
    anew = to_wire(Outgoing(room="!r", event=edit, txn_id="t"))
    assert isinstance(anew, SendWire)
    assert "m.relates_to" not in anew.content


def test_outgoing_delete_redacts_and_needs_a_target() -> None:
    gone = Delete(id=EventId("ev3"), origin=ORIGIN, target=EventId("ev1"))
    assert to_wire(Outgoing(room="!r", event=gone, target=RemoteId("$s"), txn_id="t")) == (
        RedactWire(target=RemoteId("$s"))
    )
    with pytest.raises(ValueError, match="target"):
        to_wire(Outgoing(room="!r", event=gone, txn_id="t"))


def test_outgoing_attachments_become_links() -> None:
    att = Attachment(url="https://x.example/a.png", name="a.png")
    msg = Message(id=EventId("ev4"), origin=ORIGIN, text="look", attachments=(att,))
    wire = to_wire(Outgoing(room="!r", event=msg, txn_id="t"))
    assert isinstance(wire, SendWire)
    assert wire.content["body"] == "look\na.png: https://x.example/a.png"
