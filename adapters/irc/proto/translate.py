"""IRC lines ⇄ core events, as pure functions.

Incoming (`to_core`), each line becomes at most a few events with cleaned text and
nicks, and keeps the `Roster` up to date, which is what lets a QUIT or NICK (naming no
channel) become an event in each shared channel; what a line means beyond itself (the
rooms joined, the relay's nick, the event a reply names) comes in its `Context`.
Outgoing (`to_wire`), an event becomes the lines that say it in a channel, cut to fit
the wire by `lines`. No I/O here.

A PRIVMSG to the relay's own nick is a private message to the relay account: it becomes
a message with `Origin.direct`, its room the sender's nick (where the answer goes).
A reaction is a TAGMSG carrying the client tags `+draft/react` (the key) and
`+draft/reply` (the msgid reacted to), per the IRCv3 draft "react" client tag; servers
that do not pass client tags (ngircd) never send one.

A sender is their services account where the server tells it: the `account` tag
(IRCv3 account-tag, whose absence once negotiated means not logged in), else what the
roster learnt from extended-join, account-notify or WHOX. The nick is then only the
display name; a sender with no known account keeps the nick as id and is marked
unauthenticated, since anyone can take a nick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from imbridge.adapters.irc.proto import formatting, wire
from imbridge.adapters.irc.proto.lines import Mask, Outbound, build_lines, split_line, text_budget
from imbridge.adapters.irc.proto.names import irc_lower
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.events import (
    Delete,
    Edit,
    Event,
    EventId,
    Join,
    Kick,
    Leave,
    Message,
    MessageKind,
    NickChange,
    Origin,
    Presence,
    PresenceState,
    Reaction,
    RemoteId,
    Sender,
    Topic,
    new_event_id,
    utcnow,
)
from imbridge.richtext import clean as clean_rich
from imbridge.sanitize import clean_nick, clean_text

RELAY_TAG = "+imbridge/relayed"
"""Client-only tag (IRCv3 message-tags) on every line the relay sends, where the server
supports tags, so a peer bridge in the same channel knows not to relay it again."""

REPLY_TAG = "+draft/reply"
REACT_TAG = "+draft/react"
UNREACT_TAG = "+draft/unreact"
MAX_KEY_CHARS = 64
KNOWN_RELAY_TAGS = frozenset({RELAY_TAG, "+draft/relay", "+matterbridge/relayed"})
RELAYMSG_TAG = "draft/relaymsg"
"""IRCv3 draft/relaymsg: a bridge sends `RELAYMSG #chan nick/net :text` and the server
delivers it as a PRIVMSG from the spoofed `nick/net`, tagged with the bridge's nick (a
server tag, which clients cannot forge). Such a line is another bridge's relayed copy."""
NAMES_PREFIXES = "~&@%+!"


@dataclass(frozen=True, slots=True)
class Context:
    """What translating an incoming line needs besides the line: the translation context."""

    network: str
    own_nick: str
    rooms: dict[str, str]
    """Folded channel name → room name as the core knows it (joined rooms only)."""
    reply_to: EventId | None = None
    now: Callable[[], datetime] = utcnow
    new_id: Callable[[], EventId] = new_event_id
    """Where the ids and the time of new events come from: inputs, never made here."""
    account_tag: bool = False
    """The server sends the `account` tag (account-tag negotiated)."""
    accounts: Mapping[str, str] = field(default_factory=dict)
    """The roster's folded nick → account."""
    relaymsg_separator: str = ""
    """The `RELAYMSG=<sep>` ISUPPORT value, when the server offers draft/relaymsg: a nick
    holding it (`alice/discord`) can only be a bridge's spoofed sender."""

    def is_relayed(self, line: wire.Line) -> bool:
        """The line carries a bridge's relay marker: a known client tag, draft/relaymsg's
        server tag, or a sender nick only RELAYMSG can produce."""
        tags = line.tags.keys()
        sep = self.relaymsg_separator
        return (
            bool(KNOWN_RELAY_TAGS & tags)
            or RELAYMSG_TAG in tags
            or bool(sep and line.source is not None and sep in line.nick)
        )

    def sender(self, line: wire.Line, nick: str | None = None) -> Sender:
        """Who `nick` (by default the line's source) is: their account when known."""
        shown = clean_nick(nick or line.nick)
        if nick is None and self.account_tag:
            account = line.tags.get("account")
        else:
            account = self.accounts.get(irc_lower(nick or line.nick))
        if account:
            return Sender(id=clean_nick(account), name=shown)
        return Sender(id=shown, name=shown, authenticated=False)

    def room(self, channel: str) -> str | None:
        return self.rooms.get(irc_lower(channel))

    def is_own(self, target: str) -> bool:
        return bool(target) and irc_lower(target) == irc_lower(self.own_nick)

    def origin(
        self, line: wire.Line, room: str, nick: str | None = None, *, direct: bool = False
    ) -> Origin:
        msgid = line.tags.get("msgid")
        return Origin(
            network=self.network,
            room=room,
            sender=self.sender(line, nick),
            remote_id=RemoteId(msgid) if msgid else None,
            timestamp=wire.server_time(line.tags) or self.now(),
            relayed=self.is_relayed(line),
            direct=direct,
        )

    def place(self, line: wire.Line) -> tuple[str, bool] | None:
        """(room, direct) of a line sent to a joined channel or to the relay itself."""
        target = line.param(0)
        if self.is_own(target):
            return clean_nick(line.nick), True
        room = self.room(target)
        return (room, False) if room is not None else None


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


def message_to_core(line: wire.Line, ctx: Context) -> Message | None:
    """A PRIVMSG/NOTICE to a joined channel (CTCP ACTION as an emote), or a PRIVMSG to
    the relay itself (a private message); None for other CTCP, notices to the relay
    (services talk that way, and a notice is never answered), server notices and the
    relay's own lines."""
    if line.source is None or line.source.is_server or len(line.params) < 2:
        return None
    # Exact match only: `@#chan` (STATUSMSG) is for the channel's operators, not for
    # relaying to everyone on the other side.
    place = ctx.place(line)
    kind = _kind(line.command, line.params[1])
    if ctx.is_own(line.nick) or place is None or kind is None:
        return None
    room, direct = place
    if direct and line.command != "PRIVMSG":
        return None
    text, rich = formatting.irc_to_rich(kind[1])
    if not text.strip():
        return None
    return Message(
        id=ctx.new_id(),
        origin=ctx.origin(line, room, direct=direct),
        text=text,
        rich=clean_rich(rich) if rich is not None else None,
        kind=kind[0],
        reply_to=ctx.reply_to,
    )


Handler = Callable[[wire.Line, Context, Roster], list[Event]]


def to_core(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    """The events one incoming line stands for, updating `roster` as the line says.
    Lines of the relay itself (its joins, its echoes) give no event."""
    handler = _HANDLERS.get(line.command)
    return handler(line, ctx, roster) if handler else []


def _is_self(line: wire.Line, ctx: Context) -> bool:
    return irc_lower(line.nick) == irc_lower(ctx.own_nick)


def _message(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    msg = message_to_core(line, ctx)
    return [msg] if msg else []


def reaction_to_core(line: wire.Line, ctx: Context) -> Reaction | None:
    """A TAGMSG reacting to a message the bridge knows (`ctx.reply_to`, resolved from
    `+draft/reply`); None for any other TAGMSG (typing notices, ...)."""
    if line.source is None or line.source.is_server or ctx.is_own(line.nick):
        return None
    removed = UNREACT_TAG in line.tags
    key = line.tags.get(UNREACT_TAG if removed else REACT_TAG, "")
    key = clean_nick(key)[:MAX_KEY_CHARS]
    place = ctx.place(line)
    if not key or place is None or ctx.reply_to is None:
        return None
    room, direct = place
    return Reaction(id=ctx.new_id(), origin=ctx.origin(line, room, direct=direct),
                    target=ctx.reply_to, key=key, removed=removed)  # fmt: skip


def _reaction(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    reaction = reaction_to_core(line, ctx)
    return [reaction] if reaction else []


def _join(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    room = ctx.room(line.param(0))
    if room is None:
        return []
    if _is_self(line, ctx):
        roster.left(line.param(0))  # NAMES follows and fills the channel afresh
        roster.joined(line.param(0))
        return []
    roster.add(line.param(0), line.nick)
    if len(line.params) >= 3:  # IRCv3 extended-join: `JOIN #chan account :realname`
        roster.set_account(line.nick, line.param(1))
    return [Join(id=ctx.new_id(), origin=ctx.origin(line, room))]


def _part(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    room = ctx.room(line.param(0))
    if room is None:
        return []
    if _is_self(line, ctx):
        roster.left(line.param(0))
        return []
    roster.remove(line.param(0), line.nick)
    reason = _one_line(line.param(1))
    return [Leave(id=ctx.new_id(), origin=ctx.origin(line, room), reason=reason)]


def _quit(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    if _is_self(line, ctx):
        return []
    reason = _one_line(line.param(0))
    return [
        Leave(id=ctx.new_id(), origin=ctx.origin(line, room), reason=reason)
        for room in _rooms(ctx, roster.quit(line.nick))
    ]


def _nick(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    new = line.param(0)
    chans = roster.rename(line.nick, new)
    if _is_self(line, ctx) or not new:
        return []
    name = clean_nick(new)
    return [
        NickChange(id=ctx.new_id(), origin=ctx.origin(line, room), new_name=name)
        for room in _rooms(ctx, chans)
    ]


def _topic(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    room = ctx.room(line.param(0))
    if _is_self(line, ctx) or room is None:
        return []
    text = clean_text(formatting.strip_codes(line.param(1)))
    return [Topic(id=ctx.new_id(), origin=ctx.origin(line, room), text=text)]


def _away(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    """IRCv3 away-notify: AWAY with a reason is away, without one is back."""
    if _is_self(line, ctx):
        return []
    state = PresenceState.AWAY if line.params else PresenceState.ONLINE
    status = _one_line(line.param(0))
    return [
        Presence(id=ctx.new_id(), origin=ctx.origin(line, room), state=state, status=status)
        for room in _rooms(ctx, roster.channels_of(line.nick))
    ]


def _names(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    """RPL_NAMREPLY `<me> <type> <channel> :<names>` (with multi-prefix: `@+nick`)."""
    channel = line.param(2)
    if ctx.room(channel) is not None:
        for name in line.param(3).split():
            roster.add(channel, name.lstrip(NAMES_PREFIXES).split("!")[0])
    return []


def _kick(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    channel, victim = line.param(0), line.param(1)
    room = ctx.room(channel)
    if room is None or not victim:
        return []
    if irc_lower(victim) == irc_lower(ctx.own_nick):
        roster.left(channel)
        return []
    roster.remove(channel, victim)
    by = clean_nick(line.nick) if line.source is not None and line.nick else ""
    return [Kick(id=ctx.new_id(), origin=ctx.origin(line, room, victim), by=by,
                 reason=_one_line(line.param(2)))]  # fmt: skip


def _account(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    """IRCv3 account-notify: `ACCOUNT name` on login, `ACCOUNT *` on logout."""
    roster.set_account(line.nick, line.param(0))
    return []


WHOX_MARK = "152"
"""Marks the replies to the relay's own `WHO #chan %tna,152`, and no one else's."""


def _whox(line: wire.Line, ctx: Context, roster: Roster) -> list[Event]:
    """RPL_WHOSPCRPL `<me> 152 <nick> <account>` (account `0`: not logged in)."""
    if line.param(1) == WHOX_MARK and line.param(2):
        roster.set_account(line.param(2), line.param(3))
    return []


def _one_line(text: str) -> str:
    return clean_text(formatting.strip_codes(text)).replace("\n", " ")


def _rooms(ctx: Context, channels: Iterable[str]) -> list[str]:
    return [r for r in (ctx.room(c) for c in channels) if r is not None]


_HANDLERS: dict[str, Handler] = {
    "PRIVMSG": _message,
    "NOTICE": _message,
    "TAGMSG": _reaction,
    "JOIN": _join,
    "PART": _part,
    "QUIT": _quit,
    "NICK": _nick,
    "KICK": _kick,
    "TOPIC": _topic,
    "AWAY": _away,
    "353": _names,
    "ACCOUNT": _account,
    "354": _whox,
}


# --- outgoing --------------------------------------------------------------------


class NotSendable(ValueError):
    """An event IRC cannot carry at all (a delete): permanent, never retried."""


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


def to_wire(
    event: Event,
    target: str,
    *,
    mask: Mask,
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
        case Reaction():
            raise NotSendable("reactions are not relayed")
        case NickChange() | Kick():
            raise NotSendable("membership is relayed as notices")
        case _:
            assert_never(event)
    return build_lines(
        body,
        target,
        command=command,
        action=action,
        mask=mask,
        tags=tags,
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
