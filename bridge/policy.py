"""Gateway policy: which event may cross to which destination, decided before queueing.

Rules are compiled once at load (regexes with RE2, so no rule can stall the daemon);
`decide` is a pure function of (event, destination, policy) returning a `Decision` value
that the archive records and the logs print. Information barriers are checked first and no
rule can open them; then rules top to bottom, first match wins; with no match, the
policy's default applies.

What counts as "the text" is everything that would reach the far side: the plain text, the
formatted body (a client may send a formatted body that differs from its plain one),
attachment names and URLs, a topic, a leave reason, a presence status, and a reply's quoted
original. So an edit, a reply or an attachment is checked exactly like a new message and
cannot carry denied text out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from html.parser import HTMLParser
from typing import Any

from imbridge.config.schema import (
    AttachmentMatch,
    Match,
    Member,
    Pattern,
    Policy,
    compile_pattern,
)
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    Join,
    Leave,
    Message,
    Presence,
    Reaction,
    RichText,
    Topic,
)
from imbridge.richtext import to_plain

REDACTED = "[redacted]"

__all__ = [
    "REDACTED",
    "Action",
    "CompiledPolicy",
    "Decision",
    "Destination",
    "compile_policy",
    "decide",
    "sender_notice",
    "texts_of",
]


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REDACT = "redact"
    IGNORED = "ignored"
    """Archived as seen and never relayed, whatever the rules say (not a rule action)."""


@dataclass(frozen=True, slots=True)
class Destination:
    network: str
    room: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome for one (event, destination): a value the archive stores as is."""

    action: Action
    rule: str
    """The rule or barrier name that decided, or "default"."""
    reason: str = ""
    notify_sender: bool = False
    event: Event | None = None
    """What may be relayed: the event, or its redacted copy; None when denied."""
    quoted: str | None = None
    """A reply's quoted original as it may be shown there (redacted if need be)."""
    hooks: tuple[tuple[str, str, str], ...] = ()
    """(hook name, its answer, its reason) of every policy hook asked: see `imbridge.hooks`."""

    @property
    def allowed(self) -> bool:
        return self.action is not Action.DENY and self.action is not Action.IGNORED


@dataclass(frozen=True, slots=True)
class Glob:
    network: str
    room: str
    user: str

    @classmethod
    def of(cls, m: Member) -> Glob:
        return cls(m.network, m.room, m.user)

    def matches(self, network: str, room: str, user: str | None) -> bool:
        """`user` is None for a destination, which is a room: only a member that names no
        user can contain it (else a user-only group would contain every room)."""
        if user is None and self.user != "*":
            return False
        return (
            fnmatchcase(network, self.network)
            and fnmatchcase(room, self.room)
            and (user is None or fnmatchcase(user, self.user))
        )


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    members: tuple[Glob, ...]

    def contains(self, network: str, room: str, user: str | None) -> bool:
        return any(m.matches(network, room, user) for m in self.members)


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a rule: globs, and optionally membership of a group."""

    glob: Glob
    group: Group | None

    def matches(self, network: str, room: str, user: str | None) -> bool:
        return self.glob.matches(network, room, user) and (
            self.group is None or self.group.contains(network, room, user)
        )


@dataclass(frozen=True, slots=True)
class Attachments:
    types: tuple[str, ...]
    names: tuple[str, ...]
    max_bytes: int | None

    @classmethod
    def of(cls, m: AttachmentMatch) -> Attachments:
        return cls(m.types, tuple(n.casefold() for n in m.names), m.max_bytes)

    def catches(self, a: Attachment) -> bool:
        if any(fnmatchcase(a.mimetype.casefold(), t.casefold()) for t in self.types):
            return True
        if any(fnmatchcase(a.name.casefold(), n) for n in self.names):
            return True
        return self.max_bytes is not None and (a.size is None or a.size > self.max_bytes)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    action: Action
    source: Side
    dest: Side
    text: Pattern | None
    attachments: Attachments | None
    notify_sender: bool

    def matches(self, event: Event, dest: Destination, texts: tuple[str, ...]) -> bool:
        o = event.origin
        if not self.source.matches(o.network, o.room, o.sender.id):
            return False
        if not self.dest.matches(dest.network, dest.room, None):
            return False
        if self.attachments is not None and not any(
            self.attachments.catches(a) for a in attachments_of(event)
        ):
            return False
        if self.text is None:
            return True
        if self.action is Action.ALLOW:
            # Fail closed: an allow rule must vouch for every piece that would cross, or a
            # harmless message could carry a denied quote or attachment name past it.
            return bool(texts) and all(self.text.search(t) for t in texts)
        return any(self.text.search(t) for t in texts)


@dataclass(frozen=True, slots=True)
class CompiledBarrier:
    name: str
    a: Group
    b: Group
    notify_sender: bool

    def separates(self, event: Event, dest: Destination) -> bool:
        o = event.origin
        for one, other in ((self.a, self.b), (self.b, self.a)):
            if one.contains(o.network, o.room, o.sender.id) and other.contains(
                dest.network, dest.room, None
            ):
                return True
        return False


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    default: Action
    rules: tuple[CompiledRule, ...]
    barriers: tuple[CompiledBarrier, ...] = ()


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Compiles a validated policy. Group names are checked by config loading; an unknown
    one here is a programming error (KeyError)."""
    groups = {
        name: Group(name, tuple(Glob.of(m) for m in members))
        for name, members in policy.groups.items()
    }

    def side(m: Match) -> Side:
        return Side(Glob.of(m), groups[m.group] if m.group is not None else None)

    return CompiledPolicy(
        default=Action(policy.default),
        rules=tuple(
            CompiledRule(
                name=r.name,
                action=Action(r.action),
                source=side(r.from_),
                dest=side(r.to),
                text=compile_pattern(r.text) if r.text else None,
                attachments=Attachments.of(r.attachments) if r.attachments else None,
                notify_sender=r.notify_sender,
            )
            for r in policy.rules
        ),
        barriers=tuple(
            CompiledBarrier(b.name, groups[b.between[0]], groups[b.between[1]], b.notify_sender)
            for b in policy.barriers
        ),
    )


def attachments_of(event: Event) -> tuple[Attachment, ...]:
    return event.attachments if isinstance(event, Message) else ()


def texts_of(event: Event, quoted: str | None = None) -> tuple[str, ...]:
    """Every piece of text that would cross: a reply's quoted original counts too."""
    texts: list[str] = []
    match event:
        case Message() | Edit():
            texts.append(event.text)
            if event.rich is not None:
                texts.extend(_rich_texts(event.rich))
        case Topic():
            texts.append(event.text)
        case Leave():
            texts.append(event.reason)
        case Presence():
            texts.append(event.status)
        case Reaction():
            texts.append(event.key)
        case Delete() | Join():
            pass
        case _:  # pragma: no cover - the union is closed
            raise AssertionError(event)
    for a in attachments_of(event):
        texts.extend((a.name, a.url))
    if quoted:
        texts.append(quoted)
    return tuple(t for t in texts if t)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def _rich_texts(rich: RichText) -> list[str]:
    """What a formatted body shows: its text and its link targets."""
    links = _Links()
    links.feed(rich)
    links.close()
    return [to_plain(rich), *links.hrefs]


def decide(
    event: Event, dest: Destination, policy: CompiledPolicy, *, quoted: str | None = None
) -> Decision:
    """The decision for relaying `event` to `dest`; `quoted` is the text of the message a
    reply answers, when the destination will show it."""
    for barrier in policy.barriers:
        if barrier.separates(event, dest):
            return Decision(
                action=Action.DENY,
                rule=barrier.name,
                notify_sender=barrier.notify_sender,
                reason=f"information barrier {barrier.name!r}",
            )
    redactions: list[CompiledRule] = []
    for rule in policy.rules:
        if not rule.matches(event, dest, texts_of(event, quoted)):
            continue
        if rule.action is not Action.REDACT:
            return _final(
                rule.action,
                rule.name,
                notify=rule.notify_sender,
                event=event,
                quoted=quoted,
                redactions=redactions,
            )
        # A redact does not end evaluation: the redacted event goes on down the list, so
        # a later deny still applies and a redact is never a way around it.
        redacted = redact(event, rule.text, rule.attachments)
        if redacted is None:
            return Decision(
                action=Action.DENY,
                rule=rule.name,
                notify_sender=rule.notify_sender,
                reason=f"matched rule {rule.name!r}: nothing left after redaction",
            )
        event = redacted
        quoted = _sub(rule.text, quoted) if quoted is not None else None
        redactions.append(rule)
    return _final(
        policy.default,
        "default",
        notify=False,
        event=event,
        quoted=quoted,
        redactions=redactions,
    )


def _final(
    action: Action,
    name: str,
    *,
    notify: bool,
    event: Event,
    quoted: str | None,
    redactions: list[CompiledRule],
) -> Decision:
    why = "no rule matched" if name == "default" else f"matched rule {name!r}"
    if action is Action.DENY:
        return Decision(action=Action.DENY, rule=name, notify_sender=notify, reason=why)
    if not redactions:
        return Decision(
            action=Action.ALLOW,
            rule=name,
            notify_sender=notify,
            event=event,
            quoted=quoted,
            reason=why,
        )
    first = redactions[0]
    names = ", ".join(repr(r.name) for r in redactions)
    return Decision(
        action=Action.REDACT,
        rule=first.name,
        notify_sender=notify or any(r.notify_sender for r in redactions),
        event=event,
        quoted=quoted,
        reason=f"redacted by rule {names}, then allowed ({why})",
    )


def _sub(pattern: Pattern | None, text: str) -> str:
    if pattern is None:
        return text
    marker: Callable[[Any], str] = lambda _m: REDACTED  # noqa: E731 - RE2 wants a callable
    return pattern.sub(marker, text)


def redact(  # noqa: PLR0911 - one return per event kind reads best
    event: Event, pattern: Pattern | None, attachments: Attachments | None = None
) -> Event | None:
    """The event with every text match replaced by a marker and every caught attachment
    removed; None if nothing is left to relay. Formatting is dropped when the text changed,
    since a match may span markup."""
    match event:
        case Message():
            kept = _kept_attachments(event.attachments, pattern, attachments)
            text = _sub(pattern, event.text)
            rich = _rich_after(event.rich, pattern, text == event.text)
            if not text.strip() and not kept:
                return None
            return dataclasses.replace(event, text=text, rich=rich, attachments=kept)
        case Edit():
            text = _sub(pattern, event.text)
            rich = _rich_after(event.rich, pattern, text == event.text)
            return dataclasses.replace(event, text=text, rich=rich)
        case Topic():
            return dataclasses.replace(event, text=_sub(pattern, event.text))
        case Leave():
            return dataclasses.replace(event, reason=_sub(pattern, event.reason))
        case Presence():
            return dataclasses.replace(event, status=_sub(pattern, event.status))
        case Reaction():
            # A key is one emoji or word: a match leaves nothing worth showing.
            return event if pattern is None or not pattern.search(event.key) else None
        case Delete() | Join():
            return event
        case _:  # pragma: no cover - the union is closed
            raise AssertionError(event)


def _rich_after(rich: RichText | None, pattern: Pattern | None, unchanged: bool) -> RichText | None:
    if rich is None or pattern is None:
        return rich
    if unchanged and not any(pattern.search(t) for t in _rich_texts(rich)):
        return rich
    return None


def _kept_attachments(
    items: Iterable[Attachment], pattern: Pattern | None, caught: Attachments | None
) -> tuple[Attachment, ...]:
    kept: list[Attachment] = []
    for a in items:
        if caught is not None and caught.catches(a):
            continue
        if pattern is not None and pattern.search(a.url):
            continue
        if pattern is not None and a.name and pattern.search(a.name):
            a = dataclasses.replace(a, name=_sub(pattern, a.name))  # noqa: PLW2901
        kept.append(a)
    return tuple(kept)


def sender_notice(decision: Decision, dest: Destination) -> str:
    """The short notice `notify_sender` sends: it names the rule, never the matched text
    (repeating it would leak it again, and into the archive)."""
    where = f"{dest.room} on {dest.network}"
    rule = repr(decision.rule)
    if decision.action is Action.DENY:
        return f"Your message was not relayed to {where}: blocked by policy rule {rule}."
    if decision.action is Action.REDACT:
        return f"Your message was relayed to {where} with parts removed by policy rule {rule}."
    return f"Your message was relayed to {where} under policy rule {rule}."
