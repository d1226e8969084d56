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
    Kick,
    Leave,
    Mention,
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


NOPING = "\u200b"
"""Zero-width space, put inside a relayed nick by `{nick_noping}`: IRC clients highlight
a nick only as a whole word, and this splits the word without changing what is shown
(the same character matterbridge's `{NOPINGNICK}` uses). `clean_text`, which every
adapter applies to text, keeps it; only `clean_nick` would drop it, and it runs before."""
THREAD_CHARS = 30


def noping(nick: str) -> str:
    """`nick` as shown, but no longer the word an IRC client highlights."""
    return nick[:1] + NOPING + nick[1:] if len(nick) > 1 else nick


def prefix_for(origin: Origin, route: Route, caps: Capabilities | None = None) -> str:
    nick = clean_nick(origin.sender.name)
    return route.nick_format.format(
        nick=nick,
        nick_noping=noping(nick) if caps is None or caps.pings_by_name else nick,
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
    event: Event,
    route: Route,
    caps: Capabilities,
    *,
    quoted: Message | None = None,
    previous: str | None = None,
) -> Event | None:
    """The event as `route.dest` should receive it, or None if it has nothing to show
    there (a join, a reaction where reactions are not shown, a removed reaction where
    they are lines, or a delete where messages cannot be deleted). `quoted` is a reply's
    original or a reaction's target, as policy lets it be shown there.

    An edit for a destination that cannot edit stays an Edit here, carrying `previous`
    (what its target read before, when the core knows it): the outbox turns it into a
    correction line when it sends it (`as_correction`), after coalescing the quick edits
    of one message that wait behind it (`Capabilities.edit_window`)."""
    prefix = "" if caps.speaks_as_sender else prefix_for(event.origin, route, caps)
    match event:
        case Message():
            return None if event.archive_only else _message(event, prefix, caps, quoted)
        case Edit():
            if caps.edits:
                text = _fit(prefix + event.text, caps)
                return dataclasses.replace(
                    event, text=text, rich=_rich(prefix, text, event.rich, caps),
                    mentions=shifted(event.mentions, len(prefix), text),
                    body_start=min(len(prefix), len(text)),
                )  # fmt: skip
            shown = prefix + event.text
            return dataclasses.replace(
                event,
                text=shown,
                rich=None,
                previous=prefix + previous if previous else "",
                body_start=len(prefix),
                mentions=shifted(event.mentions, len(prefix), shown),
            )
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
    lead = "* corrected: "
    text = _fit(lead + shown.text, caps)
    return Message(id=shown.id, origin=shown.origin, text=text,
                   body_start=min(len(lead) + shown.body_start, len(text)),
                   mentions=shifted(shown.mentions, len(lead), text))  # fmt: skip


def shifted(mentions: tuple[Mention, ...], by: int, text: str) -> tuple[Mention, ...]:
    """`mentions` moved `by` characters to the right, as the text is once prefixed, and
    only those still whole in `text` (which `_fit` may have cut)."""
    moved = (dataclasses.replace(m, start=m.start + by, end=m.end + by) for m in mentions)
    return tuple(m for m in moved if m.end <= len(text) and text[m.start : m.end] == m.name)


def _message(event: Message, prefix: str, caps: Capabilities, quoted: Message | None) -> Message:
    text = event.text
    attachments = event.attachments
    if attachments and not caps.attachments:
        links = "\n".join(f"{a.name}: {a.url}" if a.name else a.url for a in attachments)
        text = f"{text}\n{links}" if text else links
        attachments = ()
    reply_to, thread = event.reply_to, event.thread
    lead = ""  # what render says before the sender's words
    if reply_to is not None and not caps.replies:
        if quoted is not None:
            who = clean_nick(quoted.origin.sender.name)
            lead = f'(re {who}: "{short(quoted.text)}") '
        reply_to = None
    if thread is not None and not caps.threads:
        if not lead:  # a reply's quote already says where it belongs
            root = quoted if quoted is not None and event.reply_to is None else None
            lead = f'[thread: "{short(root.text, THREAD_CHARS)}"] ' if root else "[thread] "
        thread = None
    text = lead + text
    full = _fit(prefix + text, caps)
    rich = _rich(prefix, full, event.rich, caps) if text == event.text else None
    start = min(len(prefix) + len(lead), len(full))
    return dataclasses.replace(
        event, text=full, rich=rich, attachments=attachments, reply_to=reply_to,
        thread=thread, mentions=shifted(event.mentions, start, full), body_start=start,
    )  # fmt: skip


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
