"""Matrix mentions: pills and `m.mentions` ⇄ the core's `Mention`.

Matrix spec, "User and room mentions": a pill is a link to `https://matrix.to/#/@user`
(or a `matrix:u/user` URI) around the user's display name in `formatted_body`, and
since v1.7 `m.mentions.user_ids` says whom to notify; a client that finds `m.mentions`
no longer pings on display names in the body (the legacy push rules step aside).

Incoming, each user pill becomes a `Mention` spanning its name in the plain body, and
the link itself goes (the mention carries it; another network would show a matrix.to
URL). Outgoing, the relay's message names in `m.mentions` the members the sender
mentioned: their pills, and the members' names written in the sender's words (an IRC
"bob: lunch?"); always present, so a relayed prefix that happens to hold a member's
name pings nobody. Pure functions, no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from imbridge.events import Edit, Mention, Message, RichText
from imbridge.mentions import Found, Names, explicit, mark_rich, merge

_PILL = re.compile(
    r'<a href="(?:https://matrix\.to/#/|matrix:u/)([^"?#]+)[^"]*">(.*?)</a>', re.DOTALL
)
_TAGS = re.compile(r"<[^>]*>")


def _user(target: str) -> str | None:
    user = unquote(html.unescape(target))
    if user.startswith("matrix:u/"):
        user = user[len("matrix:u/") :]
    if not user.startswith("@"):
        user = "@" + user  # `matrix:u/alice:hs` names `@alice:hs`
    return user if ":" in user and " " not in user else None


def read_pills(
    rich: RichText | None, text: str, network: str
) -> tuple[RichText | None, tuple[Mention, ...]]:
    """The mentions `rich`'s user pills make, spanning their names in `text`, and `rich`
    without the pills' links (their names stay)."""
    if rich is None or "<a " not in rich:
        return rich, ()
    mentions: list[Mention] = []
    cursor = 0

    def unlink(match: re.Match[str]) -> str:
        nonlocal cursor
        inner = match.group(2)
        user = _user(match.group(1))
        if user is None:
            return match.group(0)  # a room or event link: a link it stays
        # The body shows the pill as its text, as clients write it; some write the id
        # or its localpart instead.
        for shown in (html.unescape(_TAGS.sub("", inner)).strip(), user, user[1:].split(":")[0]):
            at = text.find(shown, cursor) if shown else -1
            if at >= 0:
                break
        if at >= 0:
            mentions.append(Mention(network=network, user=user, name=shown, start=at,
                                    end=at + len(shown)))  # fmt: skip
            cursor = at + len(shown)
        return inner

    return RichText(_PILL.sub(unlink, rich)), tuple(mentions)


def pill(shown: str, user: str) -> str:
    """The `formatted_body` markup that pings `user`, showing `shown`."""
    return f'<a href="https://matrix.to/#/{quote(user, safe="@:")}">{html.escape(shown)}</a>'


def _names(members: Mapping[str, str]) -> dict[str, str]:
    """Name -> user id: each member's display name and their id's localpart."""
    names: dict[str, str] = {}
    for user, display in members.items():
        names.setdefault(user[1:].split(":", 1)[0], user)
        if display:
            names[display] = user
    return names


@dataclass(frozen=True, slots=True)
class Members:
    """A room's members as mentions need them: built once, again when they change."""

    names: Names

    @classmethod
    def of(cls, members: Mapping[str, str]) -> Members:
        """From user id -> display name (empty when unset)."""
        return cls(Names(_names(members)))


def mentioned(event: Message | Edit, members: Members) -> list[Found]:
    """Whom of `members` `event` mentions, in text order: a marked mention of a member
    is theirs whatever network marked it, as user ids are global."""
    own = [m for m in event.mentions if m.user in members.names.users]
    return merge(explicit(own, event.body_start),
                 members.names.find(event.text, event.body_start))  # fmt: skip


def _formatted(content: dict[str, Any], event: Message | Edit, found: list[Found]) -> str:
    names = [(event.text[f.start : f.end], f.user) for f in found]
    if "formatted_body" in content:
        lead = event.text[: event.body_start]
        return mark_rich(RichText(content["formatted_body"]), lead, names, pill)
    out, at = [], 0
    for f in found:
        out += [html.escape(event.text[at : f.start]), pill(event.text[f.start : f.end], f.user)]
        at = f.end
    out.append(html.escape(event.text[at:]))
    return "".join(out).replace("\n", "<br>")


def with_mentions(
    content: dict[str, Any], event: Message | Edit, members: Members
) -> dict[str, Any]:
    """`content` of a relayed message (or the new content of an edit) with its pills
    and its `m.mentions`, which are there even when empty (see the module's note)."""
    found = mentioned(event, members)
    out = {**content, "m.mentions": {"user_ids": sorted({f.user for f in found})} if found else {}}
    if found and content.get("body") == event.text:
        out["format"] = "org.matrix.custom.html"
        out["formatted_body"] = _formatted(content, event, found)
    return out
