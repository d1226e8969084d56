"""What a policy hook is asked and what it answers: plain values, no I/O.

These are the types a hook author imports (`from imbridge.hooks import HookRequest,
Verdict`). A hook sees the event as the rules see it, the texts already normalised by
the function the rules use, so a hook and a rule can never disagree about what a message
says; it answers per destination with a `Verdict`. Redaction is given as character spans
of `HookRequest.text`, never as replacement text, so a hook can only remove, never add.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    Join,
    Kick,
    Leave,
    Message,
    NickChange,
    Origin,
    Presence,
    Reaction,
    Topic,
)
from imbridge.policy import REDACTED, Destination
from imbridge.richtext import to_plain


class HookAction(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REDACT = "redact"


Span = tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """One hook's answer for one destination."""

    action: HookAction
    reason: str = ""
    spans: tuple[Span, ...] = ()
    """For `redact`: [start, end) character offsets into `HookRequest.text`."""

    def __post_init__(self) -> None:
        if self.action is HookAction.REDACT and not self.spans:
            raise ValueError("a redact verdict needs at least one span")
        for start, end in self.spans:
            if not 0 <= start < end:
                raise ValueError(f"span ({start}, {end}) is empty or negative")

    @classmethod
    def allow(cls, reason: str = "") -> Verdict:
        return cls(action=HookAction.ALLOW, reason=reason)

    @classmethod
    def deny(cls, reason: str = "") -> Verdict:
        return cls(action=HookAction.DENY, reason=reason)

    @classmethod
    def redact(cls, spans: Sequence[Span], reason: str = "") -> Verdict:
        return cls(action=HookAction.REDACT, reason=reason, spans=tuple(spans))


@dataclass(frozen=True, slots=True, kw_only=True)
class HookRequest:
    """One event, asked about once for all the destinations the rules let it reach."""

    event: Event
    kind: str
    """`message`, `edit`, `topic`, `leave`, `presence` or `reaction`."""
    origin: Origin
    text: str
    """The main text (a message's, a topic's, a leave reason...): what spans refer to."""
    formatted: str | None
    """The formatted body as the reader sees it, as plain text; None when unformatted."""
    texts: tuple[str, ...]
    """Every piece of text that would cross, as the rules see them (quote included)."""
    quoted: str | None
    attachments: tuple[Attachment, ...]
    destinations: tuple[Destination, ...]


def main_text(event: Event) -> str | None:
    """The text spans refer to; None for an event that carries none (never asked)."""
    match event:
        case Message() | Edit() | Topic():
            return event.text
        case Leave() | Kick():
            return event.reason
        case Presence():
            return event.status
        case Reaction():
            return event.key
        case Delete() | Join() | NickChange():
            return None
        case _:  # pragma: no cover - the union is closed
            raise AssertionError(event)


def request_for(
    event: Event, texts: tuple[str, ...], quoted: str | None, dests: Sequence[Destination]
) -> HookRequest | None:
    text = main_text(event)
    if text is None:
        return None
    rich = event.rich if isinstance(event, Message | Edit) else None
    return HookRequest(
        event=event,
        kind=type(event).__name__.lower(),
        origin=event.origin,
        text=text,
        formatted=to_plain(rich) if rich is not None else None,
        texts=texts,
        quoted=quoted,
        attachments=event.attachments if isinstance(event, Message) else (),
        destinations=tuple(dests),
    )


def merge_spans(spans: Sequence[Span], length: int) -> list[Span]:
    """Overlapping or touching spans joined, clipped to the text."""
    out: list[Span] = []
    for start, end in sorted((max(0, s), min(length, e)) for s, e in spans):
        if start >= end:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def redact_spans(text: str, spans: Sequence[Span]) -> str:
    parts: list[str] = []
    at = 0
    for start, end in merge_spans(spans, len(text)):
        parts += [text[at:start], REDACTED]
        at = end
    parts.append(text[at:])
    return "".join(parts)


def with_spans_redacted(  # noqa: PLR0911 - one return per event kind reads best
    event: Event, spans: Sequence[Span]
) -> Event | None:
    """The event with its main text's spans replaced by the marker, formatting dropped
    (a span of the plain text says nothing about the markup); None if nothing is left."""
    text = main_text(event)
    if text is None or not spans:
        return event
    new = redact_spans(text, spans)
    match event:
        case Message():
            if not new.replace(REDACTED, "").strip() and not event.attachments:
                return None
            return dataclasses.replace(event, text=new, rich=None)
        case Edit():
            return dataclasses.replace(event, text=new, rich=None)
        case Topic():
            return dataclasses.replace(event, text=new)
        case Leave() | Kick():
            return dataclasses.replace(event, reason=new)
        case Presence():
            return dataclasses.replace(event, status=new)
        case Reaction():
            return None  # a key is one emoji or word: a redacted one says nothing
        case Delete() | Join() | NickChange():
            return event
        case _:  # pragma: no cover - the union is closed
            raise AssertionError(event)
