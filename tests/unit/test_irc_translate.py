"""IRC lines ⇄ core events. Outbound, the promise checked on ≥ 10 000 generated texts:
no line built holds CR, LF or NUL or passes 512 bytes with the server's prefix, and the
lines carry the cleaned text whole and in order. Inbound, recorded lines of both servers
become the events a user would expect, and the relay's own lines none."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.formatting import strip_codes
from imbridge.adapters.irc.proto.lines import Mask, build_lines, text_budget
from imbridge.adapters.irc.proto.registration import sasl_plain
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.proto.translate import Context, NotSendable, to_core, to_wire
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
    Presence,
    PresenceState,
    RichText,
    Sender,
    Topic,
)
from imbridge.sanitize import clean_text

DATA = Path(__file__).parent.parent / "data" / "irc"
MASK = Mask("relay")  # user@host unknown: the longest is assumed
ORIGIN = Origin(network="xm", room="r@muc", sender=Sender(id="alice", name="alice"))


def msg(text: str, **kw: object) -> Message:
    return Message(id=EventId("e1"), origin=ORIGIN, text=text, **kw)  # type: ignore[arg-type]


def trailing_texts(lines: tuple[str, ...], mask: Mask = MASK) -> list[str]:
    """What a client sees of each line, parsed back as the server would relay it."""
    out = []
    for line in lines:
        parsed = wire.parse(f":{mask.nick}!{'u' * 10}@{'h' * 63} {line}")
        assert parsed is not None
        out.append(parsed.params[-1])
    return out


def check_wire_safe(lines: tuple[str, ...], mask: Mask = MASK) -> None:
    for line in lines:
        assert not set(line) & {"\r", "\n", "\0"}
        assert mask.prefix_bytes() + len(line.encode("utf-8")) + 2 <= 512


# --- outbound ---------------------------------------------------------------------------


def test_text_emote_and_notice_become_privmsg_action_and_notice() -> None:
    out = to_wire(msg("<alice@xm> hi"), "#c", mask=MASK)
    assert out.lines == ("PRIVMSG #c :<alice@xm> hi",)
    emote = to_wire(msg("<alice@xm> waves", kind=MessageKind.EMOTE), "#c",
                             mask=MASK)  # fmt: skip
    assert emote.lines == ("PRIVMSG #c :\x01ACTION <alice@xm> waves\x01",)
    notice = to_wire(msg("note", kind=MessageKind.NOTICE), "#c", mask=MASK)  # fmt: skip
    assert notice.lines == ("NOTICE #c :note",)


def test_rich_text_becomes_mirc_codes_and_attachments_their_urls() -> None:
    event = msg("<alice@xm> hi bold", rich=RichText("&lt;alice@xm&gt; hi <b>bold</b>"),
                attachments=(Attachment(url="https://f.example/cat.png"),))  # fmt: skip
    out = to_wire(event, "#c", mask=MASK)
    assert out.lines == ("PRIVMSG #c :<alice@xm> hi \x02bold",
                         "PRIVMSG #c :https://f.example/cat.png")  # fmt: skip


def test_injection_attempts_stay_inside_the_text() -> None:
    text = "hi\r\nQUIT :bye\rJOIN #evil\0\x01ACTION x\x01 PRIVMSG #other :pwned"
    out = to_wire(msg(text), "#c", mask=MASK)
    check_wire_safe(out.lines)
    assert all(line.startswith("PRIVMSG #c :") for line in out.lines)
    assert trailing_texts(out.lines) == ["hi", "QUIT :bye", "JOIN #evilACTION x PRIVMSG "
                                         "#other :pwned"]  # fmt: skip


def test_long_text_splits_on_word_boundaries_and_reopens_formatting() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    out = build_lines("\x02" + words, "#c", mask=MASK)
    check_wire_safe(out.lines)
    texts = trailing_texts(out.lines)
    assert len(texts) > 2
    assert all(t.startswith("\x02") for t in texts)
    assert all(t.endswith(" ") for t in texts[:-1])  # cut after a space, not in a word
    assert "".join(strip_codes(t) for t in texts) == words


def test_multibyte_text_is_never_cut_inside_a_character_or_before_a_combining_mark() -> None:
    text = "e\u0301" * 400 + "👍🏽" * 100
    out = build_lines(text, "#c", mask=MASK)
    check_wire_safe(out.lines)
    texts = trailing_texts(out.lines)
    assert "".join(texts) == text
    assert not any(t[0] == "\u0301" for t in texts)


def test_every_line_of_a_long_message_is_sent() -> None:
    out = to_wire(msg("\n".join(f"l{i}" for i in range(120))), "#c", mask=MASK)
    assert out.lines == tuple(f"PRIVMSG #c :l{i}" for i in range(120))


def test_a_known_host_leaves_more_room_per_line() -> None:
    short = Mask("relay", "relay", "127.0.0.1")
    assert text_budget(short, "PRIVMSG", "#c") > text_budget(MASK, "PRIVMSG", "#c")
    assert text_budget(short, "PRIVMSG", "#c") == 512 - 2 - len(
        ":relay!relay@127.0.0.1 PRIVMSG #c :"
    )


def test_delete_cannot_be_sent_and_other_events_have_a_text_form() -> None:
    with pytest.raises(NotSendable):
        to_wire(Delete(id=EventId("d"), origin=ORIGIN, target=EventId("e1")), "#c",
                         mask=MASK)  # fmt: skip
    edit = Edit(id=EventId("x"), origin=ORIGIN, target=EventId("e1"), text="fixed")
    assert to_wire(edit, "#c", mask=MASK).lines == ("PRIVMSG #c :fixed",)
    topic = Topic(id=EventId("t"), origin=ORIGIN, text="new\ntopic")
    assert to_wire(topic, "#c", mask=MASK).lines == ("TOPIC #c :new topic",)
    join = Join(id=EventId("j"), origin=ORIGIN)
    assert to_wire(join, "#c", mask=MASK).lines == ("NOTICE #c :*** alice joined on xm",)
    away = Presence(id=EventId("p"), origin=ORIGIN, state=PresenceState.AWAY, status="lunch")
    assert "is away: lunch" in to_wire(away, "#c", mask=MASK).lines[0]


def test_unsafe_target_is_refused() -> None:
    with pytest.raises(wire.UnsafeLine):
        to_wire(msg("x"), "#c QUIT", mask=MASK)


def test_sasl_plain_payload_is_chunked_at_400_bytes() -> None:
    assert sasl_plain("relay", "pw") == ["AHJlbGF5AHB3"]
    chunks = sasl_plain("u", "p" * 400)
    assert [len(c) for c in chunks[:-1]] == [400] * (len(chunks) - 1)
    exact = sasl_plain("", "x" * 298)  # base64 of 300 bytes: exactly 400 chars
    assert exact[-1] == "+"


CHANNELS = st.sampled_from(["#c", "#" + "x" * 49, "#" + "y" * 199])  # 199: ~170 bytes/line
# Text with far more controls, line breaks, formatting codes and multibyte characters than
# chat has: the places where a line could end early, grow too long or lose characters.
NASTY = st.text(
    st.one_of(
        st.sampled_from("\r\n\0\x01\x02\x03\x0f\x16\x1d\x1f\x7f\x85\u2028 ,:#@!"),
        st.characters(codec="utf-8"),
        st.sampled_from(["é", "👍", "\u0301", "\u200d", "字", "\ufffd"]),
    ),
    max_size=400,
)


@settings(max_examples=10_000, deadline=None)
@given(text=NASTY, target=CHANNELS, kind=st.sampled_from(list(MessageKind)))
def test_any_text_gives_wire_safe_lines_that_carry_it_whole_and_in_order(
    text: str, target: str, kind: MessageKind
) -> None:
    if not text:
        return
    out = to_wire(msg(text, kind=kind), target, mask=MASK)
    check_wire_safe(out.lines)
    carried = []
    for seen in trailing_texts(out.lines):
        t = seen
        if kind is MessageKind.EMOTE:
            assert t.startswith("\x01ACTION ")
            assert t.endswith("\x01")
            t = t[len("\x01ACTION ") : -1]
        assert "\x01" not in t
        carried.append(t)
    # The sanitiser's documented changes: controls dropped, every line break a new line;
    # and the splitter's: a piece of blanks alone is not sent (servers refuse it).
    expected = "".join(clean_text(text).split("\n"))
    assert "".join("".join(carried).split()) == "".join(expected.split())
    if not any(c.isspace() for c in expected):
        assert "".join(carried) == expected


@settings(max_examples=2_000, deadline=None)
@given(text=NASTY)
def test_every_line_of_any_text_is_a_message(text: str) -> None:
    out = build_lines(text, "#c", mask=MASK)
    check_wire_safe(out.lines)
    assert all(line.startswith("PRIVMSG #c :") for line in out.lines)


# --- inbound ----------------------------------------------------------------------------


def recorded(name: str) -> list[wire.Line]:
    lines = [wire.parse(raw) for raw in (DATA / name).read_bytes().split(b"\r\n") if raw]
    return [line for line in lines if line is not None]


def inbound(own: str = "bob") -> Context:
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    return Context(network="irc", own_nick=own, rooms={"#room": "#Room"},
                             now=lambda: fixed)  # fmt: skip


@pytest.mark.parametrize("server", ["ngircd", "inspircd"])
def test_recorded_channel_traffic_becomes_the_expected_events(server: str) -> None:
    roster = Roster()
    events = [e for line in recorded(f"{server}-channel.txt")
              for e in to_core(line, inbound(), roster)]  # fmt: skip
    kinds = [(type(e).__name__, e.origin.sender.id) for e in events]
    assert kinds[0] == ("Join", "alice")
    messages = [e for e in events if isinstance(e, Message)]
    assert messages[0].text == "hello bold red"
    assert messages[0].rich == "hello <b>bold</b> red"
    assert messages[0].origin.room == "#Room"  # the core's name for it
    assert messages[1].kind is MessageKind.EMOTE
    assert messages[1].text == "waves"
    assert messages[2].kind is MessageKind.NOTICE
    (renamed,) = [e for e in events if isinstance(e, NickChange)]
    assert (renamed.origin.sender.name, renamed.new_name) == ("alice", "alice2")
    assert kinds[-1] == ("Leave", "alice2")
    if server == "inspircd":
        tagged = messages[3]
        assert tagged.text == "tagged"
        assert tagged.origin.relayed
        assert messages[0].origin.remote_id == "199~1795564223~0"
        assert messages[0].origin.timestamp == datetime(2026, 11, 24, 23, 50, 27, 839000, UTC)
        presences = [e for e in events if isinstance(e, Presence)]
        assert [p.state for p in presences] == [PresenceState.AWAY, PresenceState.ONLINE]
    else:
        assert any(isinstance(e, Topic) and e.text == "new topic" for e in events)


def test_the_relays_own_lines_and_other_channels_give_no_event() -> None:
    roster = Roster()
    for raw in (
        ":bob!b@h PRIVMSG #room :my echo",
        ":alice!a@h PRIVMSG #elsewhere :hi",
        ":alice!a@h PRIVMSG carol :to someone else",  # private messages to the relay: see
        ":alice!a@h PRIVMSG @#room :ops only",
        ":alice!a@h PRIVMSG #room :\x01VERSION\x01",
        ":irc.localhost NOTICE #room :srv",
        ":alice!a@h NOTICE #room :\x01PING 1\x01",
        ":alice!a@h PRIVMSG #room :\x02\x02",
    ):
        line = wire.parse(raw)
        assert line is not None
        assert to_core(line, inbound(), roster) == [], raw


def test_quit_becomes_leaves_and_kick_a_kick_in_the_shared_channels_only() -> None:
    roster = Roster()
    ctx = inbound()
    for raw in (":irc 353 bob = #room :@bob +carol dave", ":carol!c@h QUIT :gone",
                ":erin!e@h QUIT :not here", ":bob!b@h KICK #room dave :spam"):  # fmt: skip
        line = wire.parse(raw)
        assert line is not None
        events = to_core(line, ctx, roster)
        if "carol!" in raw:
            assert [(type(e), e.origin.sender.id) for e in events] == [(Leave, "carol")]
        elif "erin" in raw:
            assert events == []
        elif "KICK" in raw:
            (kick,) = events
            assert isinstance(kick, Kick)
            assert kick.origin.sender.id == "dave"
            assert (kick.by, kick.reason) == ("bob", "spam")


def test_reply_tag_resolved_by_the_adapter_lands_on_the_message() -> None:
    line = wire.parse("@+draft/reply=m1 :alice!a@h PRIVMSG #room :yes")
    assert line is not None
    ctx = Context(network="irc", own_nick="bob", rooms={"#room": "#room"},
                            reply_to=EventId("ev-1"))  # fmt: skip
    (event,) = to_core(line, ctx, Roster())
    assert isinstance(event, Message)
    assert event.reply_to == "ev-1"


def test_incoming_nicks_and_text_are_sanitised() -> None:
    line = wire.parse(":ev\u202eil!a@h PRIVMSG #room :hi\x00\x07 there\x7f")
    assert line is not None
    (event,) = to_core(line, inbound(), Roster())
    assert isinstance(event, Message)
    assert event.origin.sender.id == "evil"
    assert event.text == "hi there"


def test_draft_relaymsg_lines_are_another_bridges_relayed_copies() -> None:
    """IRCv3 draft/relaymsg (matterbridge, heisenbridge): the server tags the spoofed
    PRIVMSG with `draft/relaymsg`, and only RELAYMSG can make a nick holding the
    separator the server announced."""
    roster = Roster()
    tagged = wire.parse(b"@draft/relaymsg=mbot :alice/discord!x@y PRIVMSG #room :hi")
    plain = wire.parse(b":carol!c@h PRIVMSG #room :hi")
    spoofed = wire.parse(b":alice/discord!x@y PRIVMSG #room :hi")
    assert tagged is not None
    assert plain is not None
    assert spoofed is not None
    ctx = inbound()
    with_sep = dataclasses.replace(ctx, relaymsg_separator="/")
    [first] = to_core(tagged, ctx, roster)
    [second] = to_core(plain, with_sep, roster)
    [third] = to_core(spoofed, with_sep, roster)
    assert first.origin.relayed
    assert not second.origin.relayed
    assert third.origin.relayed
