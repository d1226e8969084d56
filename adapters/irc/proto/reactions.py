"""Reactions relayed to IRC, as a client tag where the server passes them, else as a line.

IRCv3 "react" (draft): a TAGMSG to the channel with `+draft/react=<key>` and
`+draft/reply=<msgid>` naming the message reacted to (`+draft/unreact` takes it back).
It needs `message-tags` negotiated and the msgid of the relayed copy, which the server
gave only with echo-message.

Elsewhere (ngircd, or a copy whose msgid is unknown) a reaction is a line. One line per
reaction would drown a channel, so the reactions to one message within a short window
are gathered into one: `* alice, bob reacted 👍 (times two), 🎉 to "first words…"`.
Removals are not worth a line. Pure functions, no I/O: the window's clock is the adapter's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.lines import Mask, split_line, text_budget
from imbridge.adapters.irc.proto.translate import REACT_TAG, REPLY_TAG, UNREACT_TAG
from imbridge.events import Reaction
from imbridge.sanitize import clean_nick, clean_text

TIMES = "\N{MULTIPLICATION SIGN}"
OWN_ID_PREFIX = "imb"
"""The relay's own txn ids start so (`imbridge.outbox.txn_id_for`): a copy sent without
echo-message is known by one, which is no msgid a client could match."""


def is_msgid(remote_id: str | None) -> bool:
    """Whether `remote_id` is a server msgid a `+draft/reply` can name."""
    return bool(remote_id) and not str(remote_id).startswith(OWN_ID_PREFIX)


def tagmsg(event: Reaction, channel: str, msgid: str, tags: dict[str, str]) -> str:
    """The TAGMSG for one reaction (or its removal) to the message `msgid`."""
    key = " ".join(clean_text(event.key).split())
    ours = {UNREACT_TAG if event.removed else REACT_TAG: key, REPLY_TAG: msgid}
    return wire.build("TAGMSG", channel, tags={**tags, **ours})


@dataclass(frozen=True, slots=True)
class Gathered:
    """One reaction waiting in a window: who, with what."""

    nick: str
    key: str


def gathered(event: Reaction) -> Gathered:
    name = clean_nick(event.origin.sender.name or event.origin.sender.id)
    return Gathered(nick=name, key=" ".join(clean_text(event.key).split()))


def summary(reactions: Iterable[Gathered], excerpt: str) -> str:
    """`* alice, bob reacted 👍, 🎉 to "…"`: people and keys in the order they came,
    each once, a key followed by a multiplication sign and its count when more than one
    person used it."""
    nicks: dict[str, None] = {}
    counts: dict[str, set[str]] = {}
    for r in reactions:
        nicks[r.nick] = None
        counts.setdefault(r.key, set()).add(r.nick)
    keys = ", ".join(k if len(who) == 1 else f"{k} {TIMES}{len(who)}" for k, who in counts.items())
    about = f' to "{excerpt}"' if excerpt else ""
    return f"* {', '.join(nicks)} reacted {keys}{about}"


def summary_line(
    reactions: Iterable[Gathered], excerpt: str, channel: str, *, mask: Mask,
    tags: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """The one NOTICE line saying `summary`, cut to what fits after the server's prefix
    (a window of many reactors can say more than one line holds)."""
    budget = text_budget(mask, "NOTICE", channel)
    text = clean_text(summary(reactions, excerpt)).replace("\n", " ")
    pieces = split_line(text, budget - len(" …".encode()))
    shown = pieces[0] + (" …" if len(pieces) > 1 else "")
    return wire.build("NOTICE", channel, trailing=shown, tags=tags)


__all__ = [
    "Gathered",
    "gathered",
    "is_msgid",
    "summary",
    "summary_line",
    "tagmsg",
]
