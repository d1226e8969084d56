"""The rule engine's table: each row is one promise a security team relies on, with the
rules, events and helpers the rows are written in (`test_policy` runs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imbridge.config.schema import Policy
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    EventId,
    Join,
    Leave,
    Message,
    Origin,
    Presence,
    PresenceState,
    RichText,
    Sender,
    Topic,
)
from imbridge.policy import (
    REDACTED,
    Action,
    Destination,
)

CONFIDENTIAL = {
    "name": "no-confidential-out",
    "action": "deny",
    "from": {"network": "corp-*"},
    "to": {"network": "public-matrix"},
    "text": r"(?i)\bconfidential\b",
    "notify_sender": True,
}
REDACT_CARDS = {
    "name": "redact-cards",
    "action": "redact",
    "text": r"\b\d{4}-\d{4}-\d{4}-\d{4}\b",
}
GROUPS = {
    "trading": [{"network": "corp-irc", "room": "#trading*"}, {"user": "*@trading.corp"}],
    "research": [{"network": "corp-xmpp", "room": "research*"}],
}
BARRIER = {"name": "chinese-wall", "between": ["trading", "research"], "notify_sender": True}


def origin(where: str = "corp-irc:#ops:alice") -> Origin:
    network, room, user = where.split(":", 2)
    return Origin(network=network, room=room, sender=Sender(id=user, name=user))


def msg(text: str = "hello", where: str = "corp-irc:#ops:alice", **kw: Any) -> Message:
    return Message(id=EventId("e1"), origin=origin(where), text=text, **kw)


def dest(spec: str) -> Destination:
    network, _, room = spec.partition(":")
    return Destination(network, room or "#any")


def policy(*rules: dict[str, Any], default: str = "allow", **extra: Any) -> Policy:
    return Policy.model_validate({"default": default, "rules": list(rules), **extra})


@dataclass(frozen=True)
class Case:
    id: str
    policy: Policy
    event: Event
    to: str
    action: Action
    rule: str
    quoted: str | None = None
    text: str | None = None  # the relayed text, when it matters
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    # -- defaults ---------------------------------------------------------------------
    Case("empty-allows", policy(), msg(), "public-matrix", Action.ALLOW, "default"),
    Case("default-deny", policy(default="deny"), msg(), "public-matrix", Action.DENY, "default"),
    Case(
        "default-deny-join",
        policy(default="deny"),
        Join(id=EventId("j"), origin=origin()),
        "corp-xmpp",
        Action.DENY,
        "default",
    ),
    # -- globs ------------------------------------------------------------------------
    Case(
        "from-network-glob",
        policy(CONFIDENTIAL),
        msg("confidential!"),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "from-network-glob-miss",
        policy(CONFIDENTIAL),
        msg("confidential!", where="partner-irc:#x:bob"),
        "public-matrix",
        Action.ALLOW,
        "default",
    ),
    Case(
        "to-network-miss",
        policy(CONFIDENTIAL),
        msg("confidential"),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "room-glob",
        policy({"name": "ops-only", "action": "deny", "from": {"room": "#ops-*"}}),
        msg(where="corp-irc:#ops-secret:alice"),
        "corp-xmpp",
        Action.DENY,
        "ops-only",
    ),
    Case(
        "room-glob-miss",
        policy({"name": "ops-only", "action": "deny", "from": {"room": "#ops-*"}}),
        msg(where="corp-irc:#ops:alice"),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "user-glob",
        policy({"name": "no-bots", "action": "deny", "from": {"user": "*bot"}}),
        msg(where="corp-irc:#ops:buildbot"),
        "corp-xmpp",
        Action.DENY,
        "no-bots",
    ),
    Case(
        "user-glob-case-sensitive",
        policy({"name": "no-bots", "action": "deny", "from": {"user": "*bot"}}),
        msg(where="corp-irc:#ops:BuildBOT"),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "to-room-glob",
        policy({"name": "no-lobby", "action": "deny", "to": {"room": "lobby@*"}}),
        msg(),
        "corp-xmpp:lobby@conf.corp",
        Action.DENY,
        "no-lobby",
    ),
    # -- regex ------------------------------------------------------------------------
    Case(
        "regex-case-insensitive",
        policy(CONFIDENTIAL),
        msg("This is CONFIDENTIAL."),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "regex-word-boundary",
        policy(CONFIDENTIAL),
        msg("nonconfidentiality"),
        "public-matrix",
        Action.ALLOW,
        "default",
    ),
    Case(
        "regex-in-rich-only",
        policy(CONFIDENTIAL),
        msg("harmless", rich=RichText("<b>confidential</b>")),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "regex-in-attachment-name",
        policy(CONFIDENTIAL),
        msg("see file", attachments=(Attachment(url="mxc://a/b", name="confidential.pdf"),)),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "regex-in-topic",
        policy(CONFIDENTIAL),
        Topic(id=EventId("t"), origin=origin(), text="confidential plans"),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "regex-in-leave-reason",
        policy(CONFIDENTIAL),
        Leave(id=EventId("l"), origin=origin(), reason="confidential"),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "regex-in-presence-status",
        policy(CONFIDENTIAL),
        Presence(
            id=EventId("p"),
            origin=origin(),
            state=PresenceState.AWAY,
            status="on confidential call",
        ),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "text-rule-skips-delete",
        policy(CONFIDENTIAL),
        Delete(id=EventId("d"), origin=origin(), target=EventId("e1")),
        "public-matrix",
        Action.ALLOW,
        "default",
    ),
    # -- first match wins -------------------------------------------------------------
    Case(
        "first-match-allow-before-deny",
        policy({"name": "alice-may", "action": "allow", "from": {"user": "alice"}}, CONFIDENTIAL),
        msg("confidential"),
        "public-matrix",
        Action.ALLOW,
        "alice-may",
    ),
    Case(
        "first-match-deny-before-allow",
        policy(CONFIDENTIAL, {"name": "alice-may", "action": "allow", "from": {"user": "alice"}}),
        msg("confidential"),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "allow-rule-under-default-deny",
        policy(
            {
                "name": "corp-internal",
                "action": "allow",
                "from": {"network": "corp-*"},
                "to": {"network": "corp-*"},
            },
            default="deny",
        ),
        msg(),
        "corp-xmpp",
        Action.ALLOW,
        "corp-internal",
    ),
    Case(
        "default-deny-when-no-rule-matches",
        policy(
            {
                "name": "corp-internal",
                "action": "allow",
                "from": {"network": "corp-*"},
                "to": {"network": "corp-*"},
            },
            default="deny",
        ),
        msg(),
        "public-matrix",
        Action.DENY,
        "default",
    ),
    # -- redact -----------------------------------------------------------------------
    Case(
        "redact-span",
        policy(REDACT_CARDS),
        msg("card 1234-5678-9012-3456 ok"),
        "public-matrix",
        Action.REDACT,
        "redact-cards",
        text=f"card {REDACTED} ok",
    ),
    Case(
        "redact-every-span",
        policy(REDACT_CARDS),
        msg("1111-2222-3333-4444 and 5555-6666-7777-8888"),
        "public-matrix",
        Action.REDACT,
        "redact-cards",
        text=f"{REDACTED} and {REDACTED}",
    ),
    Case(
        "redact-no-match-falls-through",
        policy(REDACT_CARDS),
        msg("no numbers"),
        "public-matrix",
        Action.ALLOW,
        "default",
        text="no numbers",
    ),
    Case(
        "redact-edit",
        policy(REDACT_CARDS),
        Edit(
            id=EventId("e2"),
            origin=origin(),
            target=EventId("e1"),
            text="fixed: 1234-5678-9012-3456",
        ),
        "public-matrix",
        Action.REDACT,
        "redact-cards",
        text=f"fixed: {REDACTED}",
    ),
    Case(
        "redact-drops-formatting",
        policy(REDACT_CARDS),
        msg("1234-5678-9012-3456", rich=RichText("<b>1234-5678-9012-3456</b>")),
        "public-matrix",
        Action.REDACT,
        "redact-cards",
        text=REDACTED,
        extra={"rich": None},
    ),
    # -- information barriers ---------------------------------------------------------
    Case(
        "barrier-a-to-b",
        policy(groups=GROUPS, barriers=[BARRIER]),
        msg(where="corp-irc:#trading-desk:alice"),
        "corp-xmpp:research-lab@conf",
        Action.DENY,
        "chinese-wall",
    ),
    Case(
        "barrier-b-to-a",
        policy(groups=GROUPS, barriers=[BARRIER]),
        msg(where="corp-xmpp:research-lab@conf:bob"),
        "corp-irc:#trading-floor",
        Action.DENY,
        "chinese-wall",
    ),
    Case(
        "barrier-user-member",
        policy(groups=GROUPS, barriers=[BARRIER]),
        msg(where="corp-xmpp:lobby@conf:carol@trading.corp"),
        "corp-xmpp:research@conf",
        Action.DENY,
        "chinese-wall",
    ),
    Case(
        "barrier-outsiders-pass",
        policy(groups=GROUPS, barriers=[BARRIER]),
        msg(where="corp-irc:#ops:alice"),
        "corp-xmpp:research@conf",
        Action.ALLOW,
        "default",
    ),
    Case(
        "barrier-beats-allow-rule",
        policy({"name": "allow-all", "action": "allow"}, groups=GROUPS, barriers=[BARRIER]),
        msg(where="corp-irc:#trading:alice"),
        "corp-xmpp:research@conf",
        Action.DENY,
        "chinese-wall",
    ),
    Case(
        "barrier-user-group-not-a-room",
        policy(groups=GROUPS, barriers=[BARRIER]),
        msg(where="corp-xmpp:research@conf:bob"),
        "corp-xmpp:lobby@conf",
        Action.ALLOW,
        "default",
    ),
    Case(
        "group-in-rule",
        policy(
            {
                "name": "trading-stays",
                "action": "deny",
                "from": {"group": "trading"},
                "to": {"network": "public-*"},
            },
            groups=GROUPS,
        ),
        msg(where="corp-irc:#trading:alice"),
        "public-matrix",
        Action.DENY,
        "trading-stays",
    ),
    # -- edits and replies ------------------------------------------------------------
    Case(
        "edit-checked-like-message",
        policy(CONFIDENTIAL),
        Edit(
            id=EventId("e2"), origin=origin(), target=EventId("e1"), text="actually: confidential"
        ),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "edit-rich-checked",
        policy(CONFIDENTIAL),
        Edit(
            id=EventId("e2"),
            origin=origin(),
            target=EventId("e1"),
            text="ok",
            rich=RichText("<i>confidential</i>"),
        ),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
    ),
    Case(
        "reply-quoting-denied-text",
        policy(CONFIDENTIAL),
        msg("I agree", reply_to=EventId("e0")),
        "public-matrix",
        Action.DENY,
        "no-confidential-out",
        quoted="the confidential figures",
    ),
    Case(
        "reply-quote-redacted",
        policy(REDACT_CARDS),
        msg("yes", reply_to=EventId("e0")),
        "public-matrix",
        Action.REDACT,
        "redact-cards",
        quoted="card 1234-5678-9012-3456",
        text="yes",
        extra={"quoted": f"card {REDACTED}"},
    ),
    Case(
        "reply-harmless-quote",
        policy(CONFIDENTIAL),
        msg("I agree", reply_to=EventId("e0")),
        "public-matrix",
        Action.ALLOW,
        "default",
        quoted="lunch?",
    ),
]
