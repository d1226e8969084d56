"""Correction lines toward a network that cannot edit, and quick edits merged into one:
the pure parts (`corrections`, `render.as_correction`, `editwindow`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imbridge.adapter import Capabilities
from imbridge.corrections import changes, describe
from imbridge.editwindow import hold, merge_head
from imbridge.events import Edit, Event, EventId, Message, Origin, Sender
from imbridge.render import as_correction

IRC = Capabilities(
    edits=False,
    deletes=False,
    replies=False,
    attachments=False,
    formatting="irc",
    max_text_bytes=65_536,
    edit_window=3.0,
)


def edit(text: str, previous: str = "", *, eid: str = "e1", target: str = "m1") -> Edit:
    origin = Origin(network="mx", room="!r", sender=Sender(id="@alice:x", name="alice"))
    return Edit(
        id=EventId(eid), origin=origin, target=EventId(target), text=text, previous=previous
    )


def test_a_typo_fix_is_shown_as_the_changed_word_only() -> None:
    line = as_correction(edit("<alice> I like the plan", "<alice> I like teh plan"), IRC)
    assert line is not None
    assert line.text == '* alice corrected: "teh" -> "the"'


def test_an_edit_that_changes_nothing_visible_is_not_sent() -> None:
    assert as_correction(edit("<alice> the  plan ", "<alice> the plan"), IRC) is None


def test_a_rewrite_is_shown_as_the_new_text() -> None:
    line = as_correction(edit("<alice> never mind, all good", "<alice> the plan is off"), IRC)
    assert line is not None
    assert line.text == "* corrected: <alice> never mind, all good"


def test_without_the_text_before_the_line_shows_the_new_text() -> None:
    line = as_correction(edit("<alice> the plan"), IRC)
    assert line is not None
    assert line.text == "* corrected: <alice> the plan"


def test_added_and_removed_words_are_named_as_such() -> None:
    found = changes("we meet at noon today", "we meet at noon tomorrow please")
    assert found is not None
    assert describe(found) == '"today" -> "tomorrow please"'
    found = changes("we meet at noon", "we meet at noon sharp")
    assert found is not None
    assert describe(found) == '+"sharp"'
    found = changes("we really meet at noon", "we meet at noon")
    assert found is not None
    assert describe(found) == '-"really"'


@dataclass
class Queued:
    event: Event
    created: float = 0.0
    replaces: list[Any] = field(default_factory=list)


def message(text: str) -> Message:
    origin = Origin(network="mx", room="!r", sender=Sender(id="@bob:x", name="bob"))
    return Message(id=EventId("m9"), origin=origin, text=text)


def test_later_edits_of_one_message_take_the_first_ones_place() -> None:
    ends = ("teh plan works", "the plan works", "the plan works!", "the plan works well")
    texts = [f"<alice> I think {t}" for t in ends]
    first = Queued(edit(texts[1], texts[0], eid="e1"))
    second = Queued(edit(texts[2], texts[1], eid="e2"))
    third = Queued(edit(texts[3], texts[2], eid="e3"))
    queue = [first, second, third]
    assert merge_head(queue)
    assert queue == [third]
    assert third.replaces == [first, second]
    assert isinstance(third.event, Edit)
    assert third.event.previous == "<alice> I think teh plan works"
    line = as_correction(third.event, IRC)
    assert line is not None
    assert line.text == '* alice corrected: "teh" -> "the", +"well"'
    assert not merge_head(queue)


def test_edits_of_other_messages_and_messages_between_stay_in_place() -> None:
    first = Queued(edit("<alice> b", "<alice> a", eid="e1", target="m1"))
    other = Queued(edit("<alice> y", "<alice> x", eid="e2", target="m2"))
    said = Queued(message("<bob> hi"))
    queue = [first, other, said]
    assert not merge_head(queue)
    assert queue == [first, other, said]


def test_a_correction_waits_only_while_nothing_else_is_queued_behind_it() -> None:
    alone = [Queued(edit("<alice> b", "<alice> a"), created=100.0)]
    assert hold(alone, IRC, now=101.0) == 2.0
    assert hold(alone, IRC, now=104.0) == 0.0
    behind = [*alone, Queued(message("<bob> hi"), created=101.0)]
    assert hold(behind, IRC, now=101.0) == 0.0
    assert hold([Queued(message("<bob> hi"))], IRC, now=0.0) == 0.0
