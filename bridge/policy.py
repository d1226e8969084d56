"""Gateway policy: which event may cross to which destination, decided before queueing.

Rules are compiled once at load (regexes with RE2, so no rule can stall the daemon);
`decide` is a pure function of (event, destination, policy) returning a `Decision` value
that the archive records and the logs print. Information barriers are checked first and no
rule can open them; then rules top to bottom, first match wins; with no match, the
policy's default applies.

What counts as "the text" is everything that would reach the far side: the plain text, the
formatted body (a client may send a formatted body that differs from its plain one),
attachment names and URLs, a topic, a leave reason, a presence status, a reply's quoted
original, and the sender's display name. So an edit, a reply or an attachment is checked
exactly like a new message and cannot carry denied text out. Those texts are extracted
and normalised once per event (`imbridge.policytext.policy_texts`), not once per rule and
destination, and each is matched as sent and as a reader would read it.

Lexicons and `flag`: a `flag` rule never decides; every one whose conditions hold
(wherever it stands in the list, so an earlier allow cannot hide a message from review)
adds its name to the decision's `flags`, as does any rule with `flag: true`; the archive
puts a flagged event in the review queue in the same commit, so flagging costs the relay
nothing more than one record. Lexicon words are matched in the same texts as `text`,
folded (NFKD, combining marks dropped, casefolded) so `Café` and `CAFE` match `cafe`.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from imbridge.config.schema import (
    AttachmentMatch,
    Lexicon,
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
    Kick,
    Leave,
    Message,
    NickChange,
    Presence,
    Reaction,
    RichText,
    Topic,
)
from imbridge.policytext import (
    MAX_RICH_CHARS,
    PolicyTexts,
    attachments_of,
    normalise,
    policy_texts,
    rich_texts,
)

REDACTED = "[redacted]"

__all__ = [
    "REDACTED",
    "Action",
    "CompiledPolicy",
    "Decision",
    "Destination",
    "PolicyTexts",
    "compile_policy",
    "decide",
    "fold",
    "policy_texts",
    "sender_notice",
    "texts_of",
]


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REDACT = "redact"
    IGNORED = "ignored"
    """Archived as seen and never relayed, whatever the rules say (not a rule action)."""
    FLAG = "flag"
    """A rule action only: puts the event in the review queue and decides nothing."""


@dataclass(frozen=True, slots=True)
class Destination:
    network: str
    room: str
    direct: bool = False
    """A person rather than a room: `room` is then their user id on `network`, the
    recipient of a direct message (`Origin.recipient`)."""

    @property
    def user(self) -> str | None:
        """Who receives there, for groups and rules naming users: only a person does."""
        return self.room if self.direct else None


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
    flags: tuple[str, ...] = ()
    """Names of the rules that flagged the event for review (`flag`, `flag: true`)."""
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
    sender_name: Pattern | None = None
    lexicon: Pattern | None = None
    """The rule's lexicons as one pattern over folded text."""
    flag: bool = False
    authenticated: bool | None = None
    direct: bool | None = None
    """`to.direct`/`from.direct`: only direct messages (True) or only rooms (False)."""

    def matches(self, event: Event, dest: Destination, texts: PolicyTexts) -> bool:  # noqa: PLR0911 - one return per condition
        o = event.origin
        if not self.source.matches(o.network, o.room, o.sender.id):
            return False
        if self.authenticated is not None and o.sender.authenticated is not self.authenticated:
            return False
        if self.direct is not None and dest.direct is not self.direct:
            return False
        if not self.dest.matches(dest.network, dest.room, dest.user):
            return False
        if self.attachments is not None and not any(
            self.attachments.catches(a) for a in attachments_of(event)
        ):
            return False
        if self.sender_name is not None and not texts.in_name(self.sender_name):
            return False
        if self.lexicon is not None and not _lexicon_in(self.lexicon, texts):
            return False
        if self.text is None:
            return True
        if self.action is Action.ALLOW:
            # Fail closed: an allow rule must vouch for every piece that would cross, or a
            # harmless message could carry a denied quote or attachment name past it.
            return texts.every_piece(self.text)
        return texts.any_piece(self.text)


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
                dest.network, dest.room, dest.user
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

    def lexicon(names: tuple[str, ...]) -> Pattern | None:
        return lexicon_pattern([policy.lexicons[n] for n in names]) if names else None

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
                sender_name=compile_pattern(r.sender_name) if r.sender_name else None,
                lexicon=lexicon(r.lexicons),
                flag=r.flag or r.action == "flag",
                authenticated=r.from_.authenticated,
                direct=r.to.direct if r.to.direct is not None else r.from_.direct,
            )
            for r in policy.rules
        ),
        barriers=tuple(
            CompiledBarrier(b.name, groups[b.between[0]], groups[b.between[1]], b.notify_sender)
            for b in policy.barriers
        ),
    )


def fold(text: str) -> str:
    """Text as lexicons match it: compatibility-decomposed, accents dropped, casefolded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def lexicon_pattern(lexicons: Iterable[Lexicon]) -> Pattern:
    """One RE2 pattern for every word and phrase of `lexicons`, as whole words (not
    inside a longer word: `ipo` must not flag `hippo`), spaces matching any run of them."""
    alternatives = sorted(
        {
            r"\s+".join(re.escape(part) for part in fold(word).split())
            for lex in lexicons
            for word in lex.words
            if word.strip()
        },
        key=len,
        reverse=True,
    )
    edge = r"[^\pL\pN_]"
    return compile_pattern(f"(?:^|{edge})(?:{'|'.join(alternatives)})(?:$|{edge})")


def _lexicon_in(lexicon: Pattern, texts: PolicyTexts) -> bool:
    """Lexicon words are folded; the texts are searched folded, and in the normalised
    forms rules see, so look-alike letters and invisible characters hide no flag."""
    return texts.any_piece(lexicon) or any(lexicon.search(fold(t)) for t in texts.pieces)


def flags_of(
    event: Event, dest: Destination, policy: CompiledPolicy, texts: PolicyTexts
) -> tuple[str, ...]:
    """Every `flag` rule, and every rule with `flag: true`, whose conditions hold for the
    event as sent, wherever it stands and whichever rule decided: flagging is beside the
    decision, so an earlier allow cannot keep a message from review."""
    return tuple(r.name for r in policy.rules if r.flag and r.matches(event, dest, texts))


def texts_of(event: Event, quoted: str | None = None) -> tuple[str, ...]:
    """Every piece of text that would cross: a reply's quoted original counts too."""
    return policy_texts(event, quoted).pieces


def decide(
    event: Event,
    dest: Destination,
    policy: CompiledPolicy,
    *,
    quoted: str | None = None,
    texts: PolicyTexts | None = None,
) -> Decision:
    """The decision for relaying `event` to `dest`; `quoted` is the text of the message a
    reply answers, when the destination will show it. `texts` is `policy_texts(event,
    quoted)`, computed once by a caller that decides for several destinations; `flags`
    name the rules that put it in the review queue."""
    if texts is None:
        texts = policy_texts(event, quoted)
    decision = _decide(event, dest, policy, quoted, texts)
    flags = flags_of(event, dest, policy, texts)
    if flags:
        decision = dataclasses.replace(decision, flags=flags)
    if texts.rich_dropped and decision.event is not None:
        # Too large to parse, so unchecked: the plain text, checked in full, crosses.
        return dataclasses.replace(
            decision,
            event=_without_rich(decision.event),
            reason=f"{decision.reason}; formatting dropped (over {MAX_RICH_CHARS} characters)",
        )
    return decision


def _without_rich(event: Event) -> Event:
    if isinstance(event, Message | Edit) and event.rich is not None:
        return dataclasses.replace(event, rich=None)
    return event


def _decide(
    event: Event,
    dest: Destination,
    policy: CompiledPolicy,
    quoted: str | None,
    texts: PolicyTexts,
) -> Decision:
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
        if rule.action is Action.FLAG or not rule.matches(event, dest, texts):
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
        redacted = redact(event, rule.text, rule.attachments, rule.sender_name)
        if redacted is None:
            return Decision(
                action=Action.DENY,
                rule=rule.name,
                notify_sender=rule.notify_sender,
                reason=f"matched rule {rule.name!r}: nothing left after redaction",
            )
        event = redacted
        quoted = _sub(rule.text, quoted) if quoted is not None else None
        texts = policy_texts(event, quoted)  # rare: only after a redaction
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


def _hit(pattern: Pattern, text: str) -> bool:
    """A match in `text` as sent or as read (normalised)."""
    return bool(pattern.search(text)) or bool(pattern.search(normalise(text)))


def _sub(pattern: Pattern | None, text: str) -> str:
    """Every match replaced by the marker. A match found only in the normalised form (a
    word split by an invisible character, look-alike letters) has no place in the text
    as sent to replace: then the whole text is the marker (fail closed)."""
    if pattern is None:
        return text
    marker: Callable[[Any], str] = lambda _m: REDACTED  # noqa: E731 - RE2 wants a callable
    out = pattern.sub(marker, text)
    return REDACTED if pattern.search(normalise(out)) else out


def redact(
    event: Event,
    pattern: Pattern | None,
    attachments: Attachments | None = None,
    name_pattern: Pattern | None = None,
) -> Event | None:
    """The event with every text match replaced by a marker (in the sender's display name
    too) and every caught attachment removed; None if nothing is left to relay. Formatting
    is dropped when the text changed, since a match may span markup."""
    done = _redact_body(event, pattern, attachments)
    if done is None:
        return None
    name = done.origin.sender.name
    for p in (pattern, name_pattern):
        if p is not None and name and _hit(p, name):
            # A name is short: a match, as sent or as read, hides all of it.
            sender = dataclasses.replace(done.origin.sender, name=REDACTED)
            origin = dataclasses.replace(done.origin, sender=sender)
            return dataclasses.replace(done, origin=origin)
    return done


def _redact_body(  # noqa: PLR0911 - one return per event kind reads best
    event: Event, pattern: Pattern | None, attachments: Attachments | None
) -> Event | None:
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
        case Leave() | Kick():
            return dataclasses.replace(event, reason=_sub(pattern, event.reason))
        case Presence():
            return dataclasses.replace(event, status=_sub(pattern, event.status))
        case Reaction():
            # A key is one emoji or word: a match leaves nothing worth showing.
            return event if pattern is None or not _hit(pattern, event.key) else None
        case Delete() | Join() | NickChange():
            return event
        case _:  # pragma: no cover - the union is closed
            raise AssertionError(event)


def _rich_after(rich: RichText | None, pattern: Pattern | None, unchanged: bool) -> RichText | None:
    if rich is None or pattern is None:
        return rich
    if unchanged and not any(_hit(pattern, t) for t in rich_texts(rich)):
        return rich
    return None


def _kept_attachments(
    items: Iterable[Attachment], pattern: Pattern | None, caught: Attachments | None
) -> tuple[Attachment, ...]:
    kept: list[Attachment] = []
    for a in items:
        if caught is not None and caught.catches(a):
            continue
        if pattern is not None and _hit(pattern, a.url):
            continue
        if pattern is not None and a.name and _hit(pattern, a.name):
            a = dataclasses.replace(a, name=_sub(pattern, a.name))  # noqa: PLW2901
        kept.append(a)
    return tuple(kept)


HOOK_RULE_PREFIX = "hook:"
"""How a decision made by a policy hook names it (`imbridge.hooks.combine.HOOK_PREFIX`)."""


def sender_notice(decision: Decision, event: Event) -> str | None:
    """The notice a `notify_sender` rule has the relay post in the origin room, or None
    when it posts none (nothing was held back). The one text: the relay sends it and
    `imbridge policy test` previews it. It names the rule, never the matched text
    (repeating it would leak it again, and into the archive)."""
    if not decision.notify_sender or decision.event is event:
        return None
    what = "was not relayed" if decision.event is None else "was relayed with parts removed"
    rule = decision.rule
    which = (  # a policy hook's decision carries its name behind `hook:` (imbridge.hooks)
        f"policy hook {rule.removeprefix(HOOK_RULE_PREFIX)!r}"
        if rule.startswith(HOOK_RULE_PREFIX)
        else f"policy rule {rule!r}"
    )
    return f"{event.origin.sender.name}: your message {what} ({which})."
