"""Mentions and threads in the core: what render makes of them for each destination, and
that they survive the outbox and the archive (the codec)."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge import codec
from imbridge.adapter import Capabilities
from imbridge.archive.chain import Record
from imbridge.archive.export import Item, to_email
from imbridge.archive.store import Row
from imbridge.events import EventId, Mention, Message, Origin, Sender
from imbridge.mentions import find
from imbridge.policy import Destination
from imbridge.render import NOPING, render
from imbridge.router import Route

CAPS = Capabilities(edits=False, deletes=False, replies=False, attachments=False,
                    formatting="irc", max_text_bytes=400)  # fmt: skip
THREADED = Capabilities(edits=True, deletes=True, replies=True, attachments=True,
                        formatting="html", max_text_bytes=60000, threads=True)  # fmt: skip
ALICE = Origin(network="matrix", room="!r", sender=Sender(id="@alice:hs", name="alice"))


def route(fmt: str = "<{nick}@{network}> ") -> Route:
    return Route("g", Destination("irc", "#c"), fmt)


def test_nick_noping_reads_the_same_but_is_not_the_nick_as_a_word() -> None:
    shown = render(Message(id=EventId("e"), origin=ALICE, text="hi"),
                   route("<{nick_noping}@{network}> "), CAPS)  # fmt: skip
    assert isinstance(shown, Message)
    assert shown.text == f"<a{NOPING}lice@matrix> hi"
    assert shown.text.replace(NOPING, "") == "<alice@matrix> hi"
    assert "alice" not in shown.text


def test_a_mention_moves_with_the_prefix_and_marks_where_the_words_begin() -> None:
    bob = Mention(network="matrix", user="@bob:hs", name="Bob", start=4, end=7)
    msg = Message(id=EventId("e"), origin=ALICE, text="hey Bob, lunch?", mentions=(bob,))
    shown = render(msg, route(), CAPS)
    assert isinstance(shown, Message)
    (moved,) = shown.mentions
    assert shown.text[moved.start : moved.end] == "Bob"
    assert shown.text[shown.body_start :] == "hey Bob, lunch?"


def test_a_mention_cut_off_by_the_size_limit_is_dropped() -> None:
    bob = Mention(network="matrix", user="@bob:hs", name="Bob", start=300, end=303)
    msg = Message(id=EventId("e"), origin=ALICE, text="x" * 300 + "Bob", mentions=(bob,))
    small = Capabilities(edits=False, deletes=False, replies=False, attachments=False,
                         formatting="plain", max_text_bytes=200)  # fmt: skip
    shown = render(msg, route(), small)
    assert isinstance(shown, Message)
    assert shown.mentions == ()


def test_a_thread_reply_names_its_root_where_threads_cannot_be_shown() -> None:
    root = Message(
        id=EventId("root"), origin=ALICE, text="Where do we meet for the offsite next week?"
    )
    reply = Message(id=EventId("e"), origin=ALICE, text="at the lobby", thread=root.id)
    shown = render(reply, route(), CAPS, quoted=root)
    assert isinstance(shown, Message)
    assert shown.text == '<alice@matrix> [thread: "Where do we meet for the offs…"] at the lobby'
    assert shown.thread is None
    kept = render(reply, route(), THREADED, quoted=root)
    assert isinstance(kept, Message)
    assert (kept.thread, kept.text) == (root.id, "<alice@matrix> at the lobby")


def test_a_thread_reply_to_an_unknown_root_still_says_it_is_in_a_thread() -> None:
    reply = Message(id=EventId("e"), origin=ALICE, text="at the lobby", thread=EventId("gone"))
    shown = render(reply, route(""), CAPS)
    assert isinstance(shown, Message)
    assert shown.text == "[thread] at the lobby"


def test_mentions_and_thread_survive_the_codec() -> None:
    bob = Mention(network="irc", user="bob", name="bob", start=0, end=3)
    msg = Message(id=EventId("e"), origin=ALICE, text="bob: hi", mentions=(bob,),
                  thread=EventId("root"), body_start=0)  # fmt: skip
    assert codec.loads(codec.dumps(msg)) == msg
    assert codec.to_dict(msg)["thread"] == "root"


def test_a_mention_whose_words_were_rewritten_is_dropped_not_an_error() -> None:
    # A policy redaction or a hook rewrites the text without knowing about spans.
    bob = Mention(network="irc", user="bob", name="bob", start=5, end=8)
    msg = Message(id=EventId("e"), origin=ALICE, text="hey, bob!", mentions=(bob,))
    assert msg.mentions == (bob,)
    redacted = dataclasses.replace(msg, text="hey, [redacted]")
    assert redacted.mentions == ()
    assert dataclasses.replace(msg, text="bob").mentions == ()


def test_an_exported_thread_message_names_its_root_for_mail_readers_too() -> None:
    msg = Message(id=EventId("e2"), origin=ALICE, text="at the lobby", thread=EventId("root"))
    record = Record(seq=2, ts_us=1, kind="event", event_id="e2", network="matrix", room="!r")
    item = Item(row=Row(record, b"\0" * 32), event=codec.to_dict(msg), decisions=[],
                deliveries=[])  # fmt: skip
    assert item.as_json()["event"]["thread"] == "root"
    mail = to_email(item)
    assert mail["X-Imbridge-Thread"] == "root"
    assert mail["References"] == mail["In-Reply-To"] == "<root@imbridge.invalid>"


def test_names_are_found_as_whole_words_longest_first_once_each() -> None:
    names = {"Alice": "@a", "Bob (IRC)": "@b", "bob": "@c", "bobby": "@d", "x": "@x"}
    found = find("Alice: hi alice, Bob (IRC)! bobby x xalice", names)
    assert [(f.user, f.start, f.end) for f in found] == [
        ("@a", 0, 5), ("@b", 17, 26), ("@d", 28, 33)
    ]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.text("ab_", min_size=2, max_size=4), max_size=6),
    text=st.text("ab_ :", max_size=40),
)
def test_find_agrees_with_a_whole_word_regex(names: list[str], text: str) -> None:
    """Against the obvious (slow) definition: each name as a `\\w` word, any case."""
    table = {n: n.lower() for n in names}
    got = find(text, table)
    for f in got:
        assert text[f.start : f.end].lower() == f.user
        assert re.fullmatch(r"\w+", text[f.start : f.end])
        assert f.start == 0 or not re.match(r"\w", text[f.start - 1])
        assert f.end == len(text) or not re.match(r"\w", text[f.end])
    users = {f.user for f in got}
    for n in table.values():
        if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text, re.IGNORECASE):
            assert n in users


def test_nick_noping_leaves_the_name_whole_where_names_in_text_ping_nobody() -> None:
    # Matrix notifies whom `m.mentions` names, so the prefix there can stay copyable.
    matrix = Capabilities(edits=True, deletes=True, replies=True, attachments=True,
                          formatting="html", max_text_bytes=60000, pings_by_name=False)  # fmt: skip
    shown = render(Message(id=EventId("e"), origin=ALICE, text="hi"),
                   route("<{nick_noping}@{network}> "), matrix)  # fmt: skip
    assert isinstance(shown, Message)
    assert shown.text == "<alice@matrix> hi"
