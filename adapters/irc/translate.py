"""IRC lines ⇄ core events, as pure functions.

Outbound, the invariant the hypothesis tests hold this module to: whatever the text, every
line built holds no CR, LF or NUL, fits 512 bytes with the prefix the server will add, and
the lines carry the cleaned text whole and in order (aside from formatting codes reopened
at each split, and blank runs that would fill a line on their own), up to `max_lines`,
after which a notice says how much was cut. Inbound, each line becomes at most a few
events with cleaned text and nicks. No I/O here.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from imbridge.adapters.irc import formatting, wire
from imbridge.adapters.irc.config import irc_lower
from imbridge.events import (
    Delete,
    Edit,
    Event,
    EventId,
    Join,
    Leave,
    Message,
    MessageKind,
    Origin,
    Presence,
    PresenceState,
    RemoteId,
    Sender,
    Topic,
    new_event_id,
    utcnow,
)
from imbridge.richtext import clean as clean_rich
from imbridge.sanitize import clean_nick, clean_text

ACTION_OVERHEAD = len("\x01ACTION \x01")
MIN_BUDGET = 64  # bytes of text per line below which no sane channel/nick leaves us
RELAY_TAG = "+imbridge/relayed"
"""Client-only tag (IRCv3 message-tags) on every line the relay sends, where the server
supports tags, so a peer bridge in the same channel knows not to relay it again."""
REPLY_TAG = "+draft/reply"
KNOWN_RELAY_TAGS = frozenset({RELAY_TAG, "+draft/relay", "+matterbridge/relayed"})


class NotSendable(ValueError):
    """An event IRC cannot carry at all (a delete): permanent, never retried."""


# --- outbound -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mask:
    """The relay's own `nick!user@host` as the server will prefix it; unknown parts are
    assumed as long as servers allow, so a line never ends up over 512 bytes."""

    nick: str
    user: str = ""
    host: str = ""

    def prefix_bytes(self) -> int:
        user = self.user or "u" * wire.UNKNOWN_USER_LEN
        host = self.host or "h" * wire.UNKNOWN_HOST_LEN
        return wire.prefix_bytes(self.nick, user, host)


def text_budget(mask: Mask, command: str, target: str, *, action: bool = False) -> int:
    """Bytes of text one `command target :text` line can carry once the server has put
    `:nick!user@host ` in front of it (RFC 1459 §2.3)."""
    fixed = mask.prefix_bytes() + len(f"{command} {target} :".encode())
    budget = wire.MAX_LINE - fixed - (ACTION_OVERHEAD if action else 0)
    return max(budget, MIN_BUDGET)


def split_line(line: str, budget: int) -> list[str]:
    """Cuts one line (no LF) into pieces of at most `budget` UTF-8 bytes: after a space
    when one is in the second half of the piece, never inside a character, a formatting
    code, or before a combining mark; each piece reopens the formatting active at its
    start. Pieces with no visible text are dropped."""
    if len(line.encode("utf-8")) <= budget:  # the common case: one piece, as it is
        return [line] if formatting.strip_codes(line).strip() else []
    toks: list[tuple[bool, str]] = []
    for is_code, tok in formatting.tokens(line):
        toks.extend([(True, tok)] if is_code else [(False, c) for c in tok])
    sizes = [len(t.encode("utf-8")) for _, t in toks]
    pieces: list[str] = []
    state: frozenset[str] = frozenset()
    pos, n = 0, len(toks)
    while pos < n:
        head = formatting.reopen(state)
        room = budget - len(head.encode())
        end, used, last_space = pos, 0, -1
        while end < n and used + sizes[end] <= room:
            used += sizes[end]
            if toks[end] == (False, " "):
                last_space = end + 1
            end += 1
        if end < n:
            if last_space > pos + (end - pos) // 2:
                end = last_space
            else:
                back = end
                while back > pos + 1 and not toks[back][0] and _joins_previous(toks[back][1]):
                    back -= 1
                end = back if back > pos + (end - pos) // 2 else end
            end = max(end, pos + 1)
        chunk = toks[pos:end]
        body = "".join(t for _, t in chunk)
        # Servers strip trailing blanks, so a blank piece would arrive empty and be
        # refused (412): it is dropped, which is the only text a split ever loses.
        if any(not is_code and not tok.isspace() for is_code, tok in chunk):
            pieces.append(head + body)
        for is_code, tok in chunk:
            if is_code:
                state = formatting.apply(state, tok)
        pos = end
    return pieces


def _joins_previous(char: str) -> bool:
    """A combining mark, joiner or variation selector: splitting before it would change
    how the previous character looks."""
    return (
        bool(unicodedata.combining(char))
        or char in "\u200c\u200d"
        or ("\ufe00" <= char <= "\ufe0f")
    )


@dataclass(frozen=True, slots=True)
class Outbound:
    """Wire lines for one event: `lines` are messages (echoed with echo-message), `extra`
    commands that are not."""

    lines: tuple[str, ...]
    truncated_lines: int = 0
    is_message: bool = True


def message_body(event: Message | Edit) -> str:
    """IRC text of a message: mIRC codes from the rich form when there is one, plain
    text otherwise, and the URL of each attachment the text does not already show."""
    if event.rich is not None:
        body = formatting.rich_to_irc(clean_rich(event.rich))
        if not formatting.strip_codes(body).strip():
            body = clean_text(event.text)
    else:
        body = clean_text(event.text)
    if isinstance(event, Message):
        urls = [a.url for a in event.attachments if a.url not in body]
        body = "\n".join(part for part in (body, *map(clean_text, urls)) if part)
    return body


def to_irc(
    event: Event,
    target: str,
    *,
    mask: Mask,
    max_lines: int,
    tags: dict[str, str] | None = None,
) -> Outbound:
    """The lines that carry `event` into channel `target`. Raises NotSendable for what
    IRC cannot express (deleting a line), wire.UnsafeLine for a target that is not one."""
    command, action, body = "PRIVMSG", False, ""
    match event:
        case Message():
            body = message_body(event)
            if event.kind is MessageKind.NOTICE:
                command = "NOTICE"
            action = event.kind is MessageKind.EMOTE
        case Edit():
            body = message_body(event)
        case Topic():
            text = formatting.strip_codes(clean_text(event.text)).replace("\n", " ")
            budget = text_budget(mask, "TOPIC", target)
            piece = split_line(text, budget)[:1] or [""]
            line = wire.build("TOPIC", target, trailing=piece[0])
            return Outbound((line,), is_message=False)
        case Join() | Leave() | Presence():
            body, command = describe(event), "NOTICE"
        case Delete():
            raise NotSendable("IRC cannot delete a line")
        case _:
            assert_never(event)
    return build_lines(
        body,
        target,
        command=command,
        action=action,
        mask=mask,
        max_lines=max_lines,
        tags=tags,
    )


def build_lines(
    body: str,
    target: str,
    *,
    command: str = "PRIVMSG",
    action: bool = False,
    mask: Mask,
    max_lines: int,
    tags: dict[str, str] | None = None,
) -> Outbound:
    """Splits `body` into at most `max_lines` wire lines (plus one notice saying how
    many were cut); `body` may hold LF and mIRC codes, any other control is dropped."""
    budget = text_budget(mask, command, target, action=action)
    pieces: list[str] = []
    for raw in body.split("\n"):
        text = _clean_keeping_codes(raw)
        pieces.extend(split_line(text, budget))
    kept, cut = pieces[:max_lines], len(pieces) - max_lines
    lines = []
    for piece in kept:
        text = f"\x01ACTION {piece}\x01" if action else piece
        lines.append(wire.build(command, target, trailing=text, tags=tags))
    if cut > 0:
        note = f"[{cut} more line{'s' if cut != 1 else ''} not shown]"
        lines.append(wire.build("NOTICE", target, trailing=note, tags=tags))
    return Outbound(tuple(lines), truncated_lines=max(cut, 0))


def _clean_keeping_codes(text: str) -> str:
    """`clean_text` for the runs between formatting codes; the codes stay."""
    return "".join(
        tok if is_code else clean_text(tok).replace("\n", " ")
        for is_code, tok in formatting.tokens(text)
    )


def describe(event: Join | Leave | Presence) -> str:
    """One line for a membership or presence change the core asked to show."""
    who = clean_nick(event.origin.sender.name or event.origin.sender.id)
    where = clean_nick(event.origin.network)
    match event:
        case Join():
            return f"*** {who} joined on {where}"
        case Leave():
            reason = clean_text(event.reason).replace("\n", " ")
            return f"*** {who} left {where}" + (f" ({reason})" if reason else "")
        case Presence():
            status = clean_text(event.status).replace("\n", " ")
            return f"*** {who} is {event.state.value}" + (f": {status}" if status else "")
        case _:
            assert_never(event)


def max_text_bytes(mask: Mask, max_lines: int, longest_channel: int = 50) -> int:
    """What a relayed message may hold before this adapter cuts it (Capabilities)."""
    return max_lines * text_budget(mask, "PRIVMSG", "#" * longest_channel)


def sasl_plain(username: str, password: str, authzid: str = "") -> list[str]:
    """`AUTHENTICATE` payloads for SASL PLAIN (RFC 4616), in 400-byte chunks as IRCv3
    SASL requires; a payload that fills the last chunk exactly is followed by `+`."""
    data = base64.b64encode(f"{authzid}\0{username}\0{password}".encode()).decode()
    chunks = [data[i : i + 400] for i in range(0, len(data), 400)] or ["+"]
    if len(chunks[-1]) == 400:
        chunks.append("+")
    return chunks


# --- inbound --------------------------------------------------------------------------


@dataclass(slots=True)
class Roster:
    """Who is in which joined channel (folded names), so a QUIT or NICK, which names no
    channel, becomes a Leave in each channel the user shared with the relay."""

    members: dict[str, set[str]] = field(default_factory=dict)

    def joined(self, channel: str) -> None:
        self.members.setdefault(irc_lower(channel), set())

    def left(self, channel: str) -> None:
        self.members.pop(irc_lower(channel), None)

    def add(self, channel: str, nick: str) -> None:
        self.members.setdefault(irc_lower(channel), set()).add(irc_lower(nick))

    def remove(self, channel: str, nick: str) -> None:
        self.members.get(irc_lower(channel), set()).discard(irc_lower(nick))

    def channels_of(self, nick: str) -> list[str]:
        folded = irc_lower(nick)
        return [c for c, m in self.members.items() if folded in m]

    def quit(self, nick: str) -> list[str]:
        chans = self.channels_of(nick)
        for c in chans:
            self.members[c].discard(irc_lower(nick))
        return chans

    def rename(self, old: str, new: str) -> list[str]:
        chans = self.channels_of(old)
        for c in chans:
            self.members[c].discard(irc_lower(old))
            self.members[c].add(irc_lower(new))
        return chans

    def clear(self) -> None:
        self.members.clear()


NAMES_PREFIXES = "~&@%+!"


@dataclass(frozen=True, slots=True)
class Inbound:
    """What translating an incoming line needs besides the line."""

    network: str
    own_nick: str
    rooms: dict[str, str]
    """Folded channel name → room name as the core knows it (joined rooms only)."""
    reply_to: EventId | None = None
    now: Callable[[], datetime] = utcnow

    def room(self, channel: str) -> str | None:
        return self.rooms.get(irc_lower(channel))

    def origin(self, line: wire.Line, room: str, nick: str | None = None) -> Origin:
        who = clean_nick(nick or line.nick)
        msgid = line.tags.get("msgid")
        return Origin(
            network=self.network,
            room=room,
            sender=Sender(id=who, name=who),
            remote_id=RemoteId(msgid) if msgid else None,
            timestamp=wire.server_time(line.tags) or self.now(),
            relayed=bool(KNOWN_RELAY_TAGS & line.tags.keys()),
        )


def split_ctcp(text: str) -> tuple[str | None, str]:
    """`(ctcp_command, rest)` of a CTCP-framed text, `(None, text)` otherwise."""
    if not text.startswith("\x01"):
        return None, text
    inner = text[1:].removesuffix("\x01")
    command, _, rest = inner.partition(" ")
    return command.upper(), rest


def _kind(command: str, text: str) -> tuple[MessageKind, str] | None:
    ctcp, body = split_ctcp(text)
    if command == "NOTICE":
        return (MessageKind.NOTICE, body) if ctcp is None else None  # CTCP replies
    if ctcp is None:
        return MessageKind.TEXT, body
    return (MessageKind.EMOTE, body) if ctcp == "ACTION" else None


def message_to_core(line: wire.Line, ctx: Inbound) -> Message | None:
    """A PRIVMSG/NOTICE to a joined channel (CTCP ACTION as an emote); None for private
    messages, other CTCP, server notices and the relay's own lines."""
    if line.source is None or line.source.is_server or len(line.params) < 2:
        return None
    # Exact match only: `@#chan` (STATUSMSG) is for the channel's operators, not for
    # relaying to everyone on the other side.
    room = ctx.room(line.params[0])
    kind = _kind(line.command, line.params[1])
    if irc_lower(line.nick) == irc_lower(ctx.own_nick) or room is None or kind is None:
        return None
    text, rich = formatting.irc_to_rich(kind[1])
    if not text.strip():
        return None
    return Message(
        id=new_event_id(),
        origin=ctx.origin(line, room),
        text=text,
        rich=clean_rich(rich) if rich is not None else None,
        kind=kind[0],
        reply_to=ctx.reply_to,
    )


Handler = Callable[[wire.Line, Inbound, Roster], list[Event]]


def to_core(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    """The events one incoming line stands for, updating `roster` as the line says.
    Lines of the relay itself (its joins, its echoes) give no event."""
    handler = _HANDLERS.get(line.command)
    return handler(line, ctx, roster) if handler else []


def _is_self(line: wire.Line, ctx: Inbound) -> bool:
    return irc_lower(line.nick) == irc_lower(ctx.own_nick)


def _message(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    msg = message_to_core(line, ctx)
    return [msg] if msg else []


def _join(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    room = ctx.room(line.param(0))
    if room is None:
        return []
    if _is_self(line, ctx):
        roster.left(line.param(0))  # NAMES follows and fills the channel afresh
        roster.joined(line.param(0))
        return []
    roster.add(line.param(0), line.nick)
    return [Join(id=new_event_id(), origin=ctx.origin(line, room))]


def _part(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    room = ctx.room(line.param(0))
    if room is None:
        return []
    if _is_self(line, ctx):
        roster.left(line.param(0))
        return []
    roster.remove(line.param(0), line.nick)
    reason = _one_line(line.param(1))
    return [Leave(id=new_event_id(), origin=ctx.origin(line, room), reason=reason)]


def _quit(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    if _is_self(line, ctx):
        return []
    reason = _one_line(line.param(0))
    return [
        Leave(id=new_event_id(), origin=ctx.origin(line, room), reason=reason)
        for room in _rooms(ctx, roster.quit(line.nick))
    ]


def _nick(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    new = line.param(0)
    chans = roster.rename(line.nick, new)
    if _is_self(line, ctx) or not new:
        return []
    reason = f"now known as {clean_nick(new)}"
    events: list[Event] = []
    for room in _rooms(ctx, chans):
        events.append(Leave(id=new_event_id(), origin=ctx.origin(line, room), reason=reason))
        events.append(Join(id=new_event_id(), origin=ctx.origin(line, room, new)))
    return events


def _topic(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    room = ctx.room(line.param(0))
    if _is_self(line, ctx) or room is None:
        return []
    text = clean_text(formatting.strip_codes(line.param(1)))
    return [Topic(id=new_event_id(), origin=ctx.origin(line, room), text=text)]


def _away(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    """IRCv3 away-notify: AWAY with a reason is away, without one is back."""
    if _is_self(line, ctx):
        return []
    state = PresenceState.AWAY if line.params else PresenceState.ONLINE
    status = _one_line(line.param(0))
    return [
        Presence(id=new_event_id(), origin=ctx.origin(line, room), state=state, status=status)
        for room in _rooms(ctx, roster.channels_of(line.nick))
    ]


def _names(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    """RPL_NAMREPLY `<me> <type> <channel> :<names>` (with multi-prefix: `@+nick`)."""
    channel = line.param(2)
    if ctx.room(channel) is not None:
        for name in line.param(3).split():
            roster.add(channel, name.lstrip(NAMES_PREFIXES).split("!")[0])
    return []


def _kick(line: wire.Line, ctx: Inbound, roster: Roster) -> list[Event]:
    channel, victim = line.param(0), line.param(1)
    room = ctx.room(channel)
    if room is None or not victim:
        return []
    if irc_lower(victim) == irc_lower(ctx.own_nick):
        roster.left(channel)
        return []
    roster.remove(channel, victim)
    why = _one_line(line.param(2))
    reason = f"kicked by {clean_nick(line.nick)}" + (f": {why}" if why else "")
    return [Leave(id=new_event_id(), origin=ctx.origin(line, room, victim), reason=reason)]


def _one_line(text: str) -> str:
    return clean_text(formatting.strip_codes(text)).replace("\n", " ")


def _rooms(ctx: Inbound, channels: Iterable[str]) -> list[str]:
    return [r for r in (ctx.room(c) for c in channels) if r is not None]


_HANDLERS: dict[str, Handler] = {
    "PRIVMSG": _message,
    "NOTICE": _message,
    "JOIN": _join,
    "PART": _part,
    "QUIT": _quit,
    "NICK": _nick,
    "KICK": _kick,
    "TOPIC": _topic,
    "AWAY": _away,
    "353": _names,
}
