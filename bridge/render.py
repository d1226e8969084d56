"""Shapes an event for one destination: the sender prefix, and whatever the destination
cannot show turned into text it can (a correction line for an edit, a quote for a reply,
URLs for attachments), cut to its size. Asks capabilities, never protocol names.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import assert_never

from imbridge.adapter import Capabilities
from imbridge.events import (
    Delete,
    Edit,
    Event,
    Join,
    Kick,
    Leave,
    Message,
    MessageKind,
    NickChange,
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
EXCERPT_CHARS = 40
"""A reaction line quotes less than a reply: the key is what it says."""


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


def render(  # noqa: PLR0911 - one return per event kind
    event: Event, route: Route, caps: Capabilities, *, quoted: Message | None = None
) -> Event | None:
    """The event as `route.dest` should receive it, or None if it has nothing to show
    there (a join, a reaction where reactions are not shown, a removed reaction where
    they are lines, or a delete where messages cannot be deleted). `quoted` is a reply's
    original or a reaction's target, as policy lets it be shown there."""
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
            return as_correction(dataclasses.replace(event, text=prefix + event.text), caps)
        case Delete():
            return event if caps.deletes else None
        case Topic():
            text = _fit(f"{prefix}changed the topic to: {event.text}", caps)
            return Message(id=event.id, origin=event.origin, text=text, kind=MessageKind.NOTICE)
        case Reaction():
            return _reaction(event, prefix, caps, quoted)
        case Join() | Leave() | Presence():
            pass  # not shown
        case NickChange() | Kick():
            pass  # relayed as debounced notices, where asked (see `membership`)
        case _:
            assert_never(event)
    return None


def as_correction(shown: Edit, caps: Capabilities) -> Message:
    """An edit that cannot be shown as one, as a line saying what the message now reads.
    `shown` is the edit as the destination would show it (its sender prefix included),
    so the line is the same whether the destination cannot edit at all (here) or the
    outbox finds the edited message never reached it."""
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


def _reaction(
    event: Reaction, prefix: str, caps: Capabilities, quoted: Message | None
) -> Event | None:
    """Native: the reaction itself, with the excerpt an adapter needs when it has to fall
    back to a line (IRC without message tags). Text: one line per added reaction; a
    removal is not worth a line of its own. A key is shown as it is, on one line."""
    excerpt = short(quoted.text, EXCERPT_CHARS) if quoted is not None else ""
    match caps.reactions:
        case "native":
            return dataclasses.replace(event, excerpt=excerpt)
        case "text":
            if event.removed:
                return None
            return Message(
                id=event.id,
                origin=event.origin,
                text=_fit(reaction_line(prefix, event.key, excerpt), caps),
                kind=MessageKind.NOTICE,
            )
        case "none":
            return None
        case _:
            assert_never(caps.reactions)


def reaction_line(who: str, key: str, excerpt: str) -> str:
    """`* alice reacted 👍 to "first words…"`; `who` is a sender prefix or a list of
    nicks, used as given."""
    key = " ".join(key.split())
    about = f' to "{excerpt}"' if excerpt else ""
    return f"* {who.strip()} reacted {key}{about}"
