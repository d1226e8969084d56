"""Gateway policy: which event may cross to which destination, decided before queueing.

Rules are compiled once at load; `decide` is a pure function of (event, destination,
policy) returning a `Decision` value that the archive records and the logs print. First
matching rule wins; with no match, the policy's default applies.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase

from imbridge.config.schema import Match, Policy
from imbridge.events import Edit, Event, Message, Topic

REDACTED = "[redacted]"


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REDACT = "redact"


@dataclass(frozen=True, slots=True)
class Destination:
    network: str
    room: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    action: Action
    rule: str
    reason: str = ""
    notify_sender: bool = False
    event: Event | None = None
    """What may be relayed: the event, or its redacted copy; None when denied."""

    @property
    def allowed(self) -> bool:
        return self.action is not Action.DENY


@dataclass(frozen=True, slots=True)
class Glob:
    network: str
    room: str
    user: str

    @classmethod
    def of(cls, m: Match) -> Glob:
        return cls(m.network, m.room, m.user)

    def matches(self, network: str, room: str, user: str | None) -> bool:
        return (
            fnmatchcase(network, self.network)
            and fnmatchcase(room, self.room)
            and (user is None or fnmatchcase(user, self.user))
        )


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    action: Action
    source: Glob
    dest: Glob
    text: re.Pattern[str] | None
    notify_sender: bool

    def matches(self, event: Event, dest: Destination, texts: tuple[str, ...]) -> bool:
        o = event.origin
        if not self.source.matches(o.network, o.room, o.sender.id):
            return False
        if not self.dest.matches(dest.network, dest.room, None):
            return False
        return self.text is None or any(self.text.search(t) for t in texts)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    default: Action
    rules: tuple[CompiledRule, ...]


def compile_policy(policy: Policy) -> CompiledPolicy:
    return CompiledPolicy(
        default=Action(policy.default),
        rules=tuple(
            CompiledRule(
                name=r.name, action=Action(r.action), source=Glob.of(r.from_),
                dest=Glob.of(r.to), text=re.compile(r.text) if r.text else None,
                notify_sender=r.notify_sender,
            )
            for r in policy.rules
        ),
    )


def texts_of(event: Event, quoted: str | None = None) -> tuple[str, ...]:
    """Every piece of text that would cross: a reply's quoted original counts too."""
    texts: list[str] = []
    if isinstance(event, Message | Edit | Topic):
        texts.append(event.text)
    if isinstance(event, Message):
        texts.extend(a.name for a in event.attachments if a.name)
    if quoted:
        texts.append(quoted)
    return tuple(texts)


def decide(
    event: Event, dest: Destination, policy: CompiledPolicy, *, quoted: str | None = None
) -> Decision:
    texts = texts_of(event, quoted)
    for rule in policy.rules:
        if rule.matches(event, dest, texts):
            relayed: Event | None = event
            if rule.action is Action.DENY:
                relayed = None
            elif rule.action is Action.REDACT and rule.text is not None:
                relayed = redact(event, rule.text)
            return Decision(
                action=rule.action, rule=rule.name, notify_sender=rule.notify_sender,
                event=relayed, reason=f"matched rule {rule.name!r}",
            )
    return Decision(
        action=policy.default, rule="default",
        event=event if policy.default is Action.ALLOW else None,
        reason="no rule matched",
    )


def redact(event: Event, pattern: re.Pattern[str]) -> Event:
    """The event with every match replaced by a marker; formatting is dropped, since a
    match may span markup."""
    if isinstance(event, Message | Edit):
        return dataclasses.replace(event, text=pattern.sub(REDACTED, event.text), rich=None)
    if isinstance(event, Topic):
        return dataclasses.replace(event, text=pattern.sub(REDACTED, event.text))
    return event
