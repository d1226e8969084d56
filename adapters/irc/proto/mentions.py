"""Mentions toward IRC: the nick itself, which is all that pings there.

IRC has no mention markup: a client highlights its user when their nick stands as a
word in a line. A mention marked elsewhere (a Matrix pill, a XEP-0372 reference) shows
a display name, which may not be the nick ("Dave (IRC)" for `dave`, a ghost
`@irc_dave:hs` shown as "Dave"). Where the name is no nick in the channel but the
mentioned user's id leads to one (a Matrix localpart, an occupant's nick, the nick of
an IRC user, with a bridge's `irc_`-style prefix dropped), the name is replaced by that
nick in the text and its formatted twin. Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Collection

from imbridge.events import Edit, Mention, Message, RichText
from imbridge.mentions import mark_rich

from .names import irc_lower


def _candidates(m: Mention) -> list[str]:
    """Nicks the mentioned user may have, best first."""
    user = m.user
    if user.startswith("@") and ":" in user:  # a Matrix id: @local:server
        local = user[1:].split(":", 1)[0]
    elif "/" in user:  # an XMPP occupant: room@service/nick
        local = user.rsplit("/", 1)[1]
    else:
        local = user.split("@", 1)[0]
    found = [m.name, local]
    if "_" in local:
        found.append(local.split("_", 1)[1])  # a bridge's ghost: irc_dave, freenode_dave
    return found


def nick_for(m: Mention, nicks: Collection[str]) -> str | None:
    """The nick in the channel (folded names in `nicks`) that `m` means, if any."""
    for candidate in _candidates(m):
        if candidate and irc_lower(candidate) in nicks:
            return candidate
    return None


def with_nicks(event: Message | Edit, nicks: Collection[str]) -> Message | Edit:
    """`event` with each mention's shown name replaced by the nick it means, where that
    differs; unchanged when nothing maps. The mentions go once used: IRC has nothing
    more to make of them."""
    swaps = []
    for m in sorted(event.mentions, key=lambda m: m.start):
        nick = nick_for(m, nicks)
        if nick is not None and irc_lower(nick) != irc_lower(m.name):
            swaps.append((m, nick))
    if not swaps:
        return event
    text, shift = event.text, 0
    for m, nick in swaps:
        start, end = m.start + shift, m.end + shift
        text = text[:start] + nick + text[end:]
        shift += len(nick) - (m.end - m.start)
    rich = event.rich
    if rich is not None:
        names = [(m.name, nick) for m, nick in swaps]
        lead = event.text[: event.body_start]
        rich = mark_rich(rich, lead, names, lambda _shown, nick: html.escape(nick))
    return dataclasses.replace(event, text=text, rich=RichText(rich) if rich else None,
                               mentions=())  # fmt: skip
