"""Shapes an event for one destination: the sender prefix, and whatever the destination
cannot show turned into text it can (a correction line for an edit, a quote for a reply,
URLs for attachments), cut to its size. Asks capabilities, never protocol names.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import assert_never

from imbridge import corrections
from imbridge.adapter import Capabilities
from imbridge.events import (
    Delete,
    Edit,
    Event,
    Join,
    Leave,
    Message,
    MessageKind,
    Origin,
    Presence,
    Reaction,
    RichText,
    Topic,
)
from imbridge.richtext import escape
from imbridge.router import Route
from imbridge.sanitize import clean_nick, close_bidi, truncate_utf8

CUT_MARK = " […]"
QUOTE_CHARS = 60


def prefix_for(origin: Origin, route: Route) -> str:
    return route.nick_format.format(
        nick=clean_nick(origin.sender.name),
        network=origin.network,
        room=origin.room,
        gateway=route.gateway,
        user=clean_nick(origin.sender.id),
    )


def _rich(prefix: str, text: str, rich: RichText | None, caps: Capabilities) -> RichText | None:
    if caps.formatting == "plain" or rich is None:
        return None
    return RichText(escape(prefix) + rich)


def _fit(text: str, caps: Capabilities) -> str:
    if len(text.encode("utf-8")) <= caps.max_text_bytes:
        return text
    return truncate_utf8(text, caps.max_text_bytes - len(CUT_MARK.encode())) + CUT_MARK


def short(text: str, limit: int = QUOTE_CHARS) -> str:
    """A one-line excerpt for a quote, closing any direction change it opens."""
    line = " ".join(text.split())
    return close_bidi(line if len(line) <= limit else line[: limit - 1] + "…")


def render(
    event: Event,
    route: Route,
    caps: Capabilities,
    *,
    quoted: Message | None = None,
    previous: str | None = None,
) -> Event | None:
    """The event as `route.dest` should receive it, or None if it has nothing to show
    there (a join, a reaction, or a delete where messages cannot be deleted).

    An edit for a destination that cannot edit stays an Edit here, carrying `previous`
    (what its target read before, when the core knows it): the outbox turns it into a
    correction line when it sends it (`as_correction`), after coalescing the quick edits
    of one message that wait behind it (`Capabilities.edit_window`)."""
    prefix = "" if caps.speaks_as_sender else prefix_for(event.origin, route)
    match event:
        case Message():
            return None if event.archive_only else _message(event, prefix, caps, quoted)
        case Edit():
            if caps.edits:
                text = _fit(prefix + event.text, caps)
                return dataclasses.replace(
                    event, text=text, rich=_rich(prefix, text, event.rich, caps)
                )
            return dataclasses.replace(
                event,
                text=prefix + event.text,
                rich=None,
                previous=prefix + previous if previous else "",
            )
        case Delete():
            return event if caps.deletes else None
        case Topic():
            text = _fit(f"{prefix}changed the topic to: {event.text}", caps)
            return Message(id=event.id, origin=event.origin, text=text, kind=MessageKind.NOTICE)
        case Join() | Leave() | Presence() | Reaction():
            # A reaction is archived, not relayed: showing reactions on every network
            # (natively where it can, as a line where it cannot) is still to come.
            return None
        case _:
            assert_never(event)


def as_correction(shown: Edit, caps: Capabilities) -> Message | None:
    """An edit that cannot be shown as one, as a line saying what changed: the changed
    words for a small change (`* nick corrected: "teh" -> "the"`), else what the message
    now reads; None for an edit that changes nothing visible, which is not sent.
    `shown` is the edit as the destination would show it (its sender prefix included,
    and `previous` with the same prefix when known), so the line is the same whether the
    destination cannot edit at all or the outbox finds the edited message never reached
    it."""
    if shown.previous:
        found = corrections.changes(shown.previous, shown.text)
        if found == []:
            return None
        if found is not None:
            who = clean_nick(shown.origin.sender.name or shown.origin.sender.id)
            text = _fit(f"* {who} corrected: {corrections.describe(found)}", caps)
            return Message(id=shown.id, origin=shown.origin, text=text)
    text = _fit(f"* corrected: {shown.text}", caps)
    return Message(id=shown.id, origin=shown.origin, text=text)


def _message(event: Message, prefix: str, caps: Capabilities, quoted: Message | None) -> Message:
    text = event.text
    attachments = event.attachments
    if attachments and not caps.attachments:
        links = "\n".join(f"{a.name}: {a.url}" if a.name else a.url for a in attachments)
        text = f"{text}\n{links}" if text else links
        attachments = ()
    reply_to = event.reply_to
    if reply_to is not None and not caps.replies:
        if quoted is not None:
            who = clean_nick(quoted.origin.sender.name)
            text = f'(re {who}: "{short(quoted.text)}") {text}'
        reply_to = None
    full = _fit(prefix + text, caps)
    rich = _rich(prefix, full, event.rich, caps) if text == event.text else None
    return dataclasses.replace(
        event, text=full, rich=rich, attachments=attachments, reply_to=reply_to
    )
