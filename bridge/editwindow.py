"""Quick edits of one message become one correction line on a network that cannot edit.

People fix a message two or three times in as many seconds; on IRC each fix used to be a
line of its own (matrix-appservice-irc #1026). The outbox holds a correction for the
destination's `Capabilities.edit_window` seconds from when it was queued, as long as
nothing else waits behind it; a later edit of the same message that joins the queue
meanwhile (or waits there already, after an outage or a restart) takes its place,
keeping the text the first one corrected (`Edit.previous`), so the one line sent says
what changed since IRC last saw the message.

Nothing is lost on a restart: a replaced item stays in the outbox table until the item
that replaced it is delivered (the outbox records both then), so a restart reads both
back and this module merges them again. Pure: no I/O, the clock is passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableSequence
from typing import Any, Protocol, TypeVar

from imbridge.adapter import Capabilities
from imbridge.events import Edit, Event


class Queued(Protocol):
    event: Event
    created: float
    replaces: list[Any]


Q = TypeVar("Q", bound=Queued)


def held(caps: Capabilities) -> bool:
    """Whether corrections to this destination wait for further edits at all."""
    return not caps.edits and caps.edit_window > 0


def merge_head(queue: MutableSequence[Q]) -> bool:
    """If the head of `queue` is an edit that a later queued edit of the same message
    replaces, hands it (with what it replaced) to the latest such edit, which now
    corrects from where the head started, and removes it from the queue. True if so."""
    head = queue[0] if queue else None
    if head is None or not isinstance(head.event, Edit):
        return False
    first = head.event
    later = [q for q in list(queue)[1:] if _edits(q.event, first)]
    if not later:
        return False
    last = later[-1]
    assert isinstance(last.event, Edit)  # noqa: S101 - `_edits` matched only edits
    last.event = dataclasses.replace(last.event, previous=first.previous)
    # The ones between go with the head: the latest edit says it all.
    gone = [head, *later[:-1]]
    last.replaces = [*(r for g in gone for r in (g, *g.replaces)), *last.replaces]
    for q in gone:
        for i, other in enumerate(queue):
            if other is q:
                del queue[i]
                break
    return True


def hold(queue: MutableSequence[Q], caps: Capabilities, now: float) -> float:
    """How long to keep the head correction back for edits still to come: 0 when it is
    no correction, its window has passed, or something else waits behind it (a message
    is not delayed for an edit)."""
    if not queue or not held(caps) or not isinstance(queue[0].event, Edit) or len(queue) > 1:
        return 0.0
    return max(0.0, queue[0].created + caps.edit_window - now)


def _edits(event: Event, first: Edit) -> bool:
    return (
        isinstance(event, Edit)
        and event.target == first.target
        and event.origin.sender.id == first.origin.sender.id
    )


__all__ = ["held", "hold", "merge_head"]
