"""Pure core functions: event invariants, the codec round trip, sanitisers, rich text."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge import codec
from imbridge.adapter import Capabilities
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    EventId,
    Message,
    MessageKind,
    Origin,
    RemoteId,
    RichText,
    Sender,
)
from imbridge.policy import Destination
from imbridge.render import as_correction, render, short
from imbridge.richtext import clean, escape, to_plain
from imbridge.router import Route
from imbridge.sanitize import clean_nick, clean_text, decode_wire, truncate_utf8

ORIGIN = Origin(
    network="n",
    room="#r",
    sender=Sender(id="u", name="U"),
    remote_id=RemoteId("r1"),
    timestamp=datetime(2026, 1, 2, tzinfo=UTC),
)


def test_events_refuse_to_exist_invalid() -> None:
    with pytest.raises(ValueError, match="text or an attachment"):
        Message(id=EventId("e"), origin=ORIGIN, text="")
    with pytest.raises(ValueError, match="timezone-aware"):
        Origin(
            network="n", room="#r", sender=Sender(id="u", name="U"), timestamp=datetime(2026, 1, 2)
        )
    with pytest.raises(ValueError, match="empty"):
        Sender(id="", name="x")


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(min_size=1),
    name=st.text(),
    reply=st.none() | st.text(min_size=1),
    kind=st.sampled_from(MessageKind),
    size=st.none() | st.integers(0, 2**40),
)
def test_codec_round_trips_every_message(
    text: str, name: str, reply: str | None, kind: MessageKind, size: int | None
) -> None:
    event = Message(
        id=EventId("e1"),
        origin=ORIGIN,
        text=text,
        rich=RichText(escape(text)),
        kind=kind,
        reply_to=EventId(reply) if reply else None,
        attachments=(Attachment(url="https://x/y", name=name, size=size),),
    )
    assert codec.loads(codec.dumps(event)) == event


def test_codec_round_trips_edits_and_deletes() -> None:
    edit = Edit(id=EventId("e2"), origin=ORIGIN, target=EventId("e1"), text="new")
    delete = Delete(id=EventId("e3"), origin=ORIGIN, target=EventId("e1"))
    assert codec.loads(codec.dumps(edit)) == edit
    assert codec.loads(codec.dumps(delete)) == delete


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_clean_text_leaves_no_control_character(text: str) -> None:
    out = clean_text(text)
    assert all(c in "\t\n" or (ord(c) >= 32 and not 0x7F <= ord(c) <= 0x9F) for c in out)
    assert "\r" not in out
    out.encode("utf-8")  # no lone surrogate survives


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_clean_nick_is_one_visible_line(text: str) -> None:
    out = clean_nick(text)
    assert out
    assert "\n" not in out
    assert not any(c in out for c in "\u202e\u202d\u2066\u2067\u2068\u2069\u200b\u200d\ufeff")
    assert len(out) <= 64


def test_decode_wire_falls_back_for_invalid_utf8() -> None:
    assert decode_wire("héllo".encode()) == "héllo"
    assert decode_wire(b"h\xe9llo") == "héllo"


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_truncate_utf8_never_splits_a_character(text: str, limit: int) -> None:
    out = truncate_utf8(text, limit)
    assert len(out.encode("utf-8", "surrogatepass")) <= max(limit, 0) or out == text
    assert text.startswith(out)


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>ok",
        '<img src=x onerror="alert(1)">ok',
        '<a href="javascript:alert(1)">ok</a>',
        '<b onclick="x()">ok</b>',
        '<iframe src="https://evil"></iframe>ok',
        '<a href="JaVaScRiPt:alert(1)">ok</a>',
    ],
)
def test_rich_text_never_keeps_script(hostile: str) -> None:
    cleaned = clean(hostile).lower()
    assert "script" not in cleaned.replace("ok", "")
    assert "onerror" not in cleaned
    assert "onclick" not in cleaned
    assert "javascript:" not in cleaned
    assert "ok" in cleaned


def test_rich_text_to_plain_keeps_what_a_reader_sees() -> None:
    assert to_plain("<b>bold</b> and <i>it</i><br>next &amp; last") == "bold and it\nnext & last"
    assert to_plain(escape("a < b\nc")) == "a < b\nc"


def test_a_quote_cannot_turn_the_reply_after_it_around() -> None:
    quoted = short("evil \u202eesrever")
    assert quoted.endswith("\u202c")
    assert short("plain") == "plain"
    assert short("\u2067isolated") == "\u2067isolated\u2069"


def test_a_destination_that_speaks_as_the_sender_gets_no_prefix() -> None:
    """Puppets (XMPP component mode) show who speaks by their own nick: the text, its
    formatted twin and a correction line carry no `nick_format` prefix there, and still
    do everywhere else."""
    route = Route("g", Destination("x", "#r"), "<{nick}@{network}> ")
    origin = Origin(network="irc", room="#a", sender=Sender(id="carol", name="carol"))
    hello = Message(id=EventId("e1"), origin=origin, text="hi", rich=RichText("<b>hi</b>"))
    fix = Edit(id=EventId("e2"), origin=origin, target=EventId("e1"), text="hi!")
    caps = Capabilities(
        edits=False, deletes=True, replies=True, attachments=True, formatting="html",
        max_text_bytes=4096,
    )  # fmt: skip
    puppets = dataclasses.replace(caps, speaks_as_sender=True)

    shown = render(hello, route, puppets)
    assert isinstance(shown, Message)
    assert (shown.text, shown.rich) == ("hi", "<b>hi</b>")
    shaped = render(fix, route, puppets)
    assert isinstance(shaped, Edit)  # the outbox makes the line, after the edit window
    corrected = as_correction(shaped, puppets)
    assert corrected is not None
    assert corrected.text == "* corrected: hi!"
    prefixed = render(hello, route, caps)
    assert isinstance(prefixed, Message)
    assert prefixed.text == "<carol@irc> hi"
