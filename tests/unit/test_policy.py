"""The rule engine, table-driven: each row is one promise a security team relies on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

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
    Decision,
    Destination,
    compile_policy,
    decide,
    sender_notice,
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


ATT_EXE = Attachment(
    url="mxc://x/1", name="Setup.EXE", mimetype="application/x-msdownload", size=10
)
ATT_BIG = Attachment(url="mxc://x/2", name="film.mp4", mimetype="video/mp4", size=50_000_000)
ATT_SMALL = Attachment(url="mxc://x/3", name="cat.png", mimetype="image/png", size=1000)
ATT_UNKNOWN = Attachment(url="mxc://x/4", name="blob", mimetype="image/png")
DENY_EXE = {"name": "no-exe", "action": "deny", "attachments": {"names": ["*.exe"]}}
DENY_VIDEO = {"name": "no-video", "action": "deny", "attachments": {"types": ["video/*"]}}
DENY_BIG = {"name": "no-big", "action": "deny", "attachments": {"max_bytes": 1_000_000}}
STRIP_EXE = {
    "name": "strip-exe",
    "action": "redact",
    "attachments": {"types": ["application/x-msdownload"]},
}

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
    # -- attachments ------------------------------------------------------------------
    Case(
        "attachment-name-glob",
        policy(DENY_EXE),
        msg("tool", attachments=(ATT_EXE,)),
        "corp-xmpp",
        Action.DENY,
        "no-exe",
    ),
    Case(
        "attachment-type-glob",
        policy(DENY_VIDEO),
        msg("clip", attachments=(ATT_BIG,)),
        "corp-xmpp",
        Action.DENY,
        "no-video",
    ),
    Case(
        "attachment-size",
        policy(DENY_BIG),
        msg("clip", attachments=(ATT_BIG,)),
        "corp-xmpp",
        Action.DENY,
        "no-big",
    ),
    Case(
        "attachment-small-passes",
        policy(DENY_BIG),
        msg("cat", attachments=(ATT_SMALL,)),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "attachment-unknown-size-fails-closed",
        policy(DENY_BIG),
        msg("?", attachments=(ATT_UNKNOWN,)),
        "corp-xmpp",
        Action.DENY,
        "no-big",
    ),
    Case(
        "attachment-rule-skips-plain-text",
        policy(DENY_EXE),
        msg("no files"),
        "corp-xmpp",
        Action.ALLOW,
        "default",
    ),
    Case(
        "attachment-stripped",
        policy(STRIP_EXE),
        msg("two files", attachments=(ATT_EXE, ATT_SMALL)),
        "corp-xmpp",
        Action.REDACT,
        "strip-exe",
        text="two files",
        extra={"attachments": (ATT_SMALL,)},
    ),
    Case(
        "attachment-stripped-nothing-left",
        policy(STRIP_EXE),
        msg("", attachments=(ATT_EXE,)),
        "corp-xmpp",
        Action.DENY,
        "strip-exe",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_engine(case: Case) -> None:
    decision = decide(case.event, dest(case.to), compile_policy(case.policy), quoted=case.quoted)
    assert (decision.action, decision.rule) == (case.action, case.rule), decision.reason
    assert (decision.event is None) == (case.action is Action.DENY)
    if case.text is not None:
        assert isinstance(decision.event, Message | Edit)
        assert decision.event.text == case.text
    for key, value in case.extra.items():
        if key == "quoted":
            assert decision.quoted == value
        else:
            assert getattr(decision.event, key) == value


def test_enough_cases() -> None:
    assert len(CASES) >= 30


def test_unique_ids() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


def test_notify_flag_travels_with_the_decision() -> None:
    d = decide(msg("confidential"), dest("public-matrix"), compile_policy(policy(CONFIDENTIAL)))
    assert d.notify_sender
    assert d.reason == "matched rule 'no-confidential-out'"


def test_notice_names_the_rule_never_the_text() -> None:
    d = decide(
        msg("the CONFIDENTIAL plan"),
        dest("public-matrix:!r:x"),
        compile_policy(policy(CONFIDENTIAL)),
    )
    notice = sender_notice(d, dest("public-matrix:!r:x"))
    assert "no-confidential-out" in notice
    assert "confidential" not in notice.lower().replace("no-confidential-out", "")
    redacted = decide(msg("1234-5678-9012-3456"), dest("x"), compile_policy(policy(REDACT_CARDS)))
    assert "parts removed" in sender_notice(redacted, dest("x"))


def test_barrier_notify() -> None:
    d: Decision = decide(
        msg(where="corp-irc:#trading:a"),
        dest("corp-xmpp:research@c"),
        compile_policy(policy(groups=GROUPS, barriers=[BARRIER])),
    )
    assert d.notify_sender
    assert d.reason == "information barrier 'chinese-wall'"


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    """RE2 has no backtracking: a pattern that would take `re` ages returns at once."""
    p = policy({"name": "evil", "action": "deny", "text": "(a+)+$"})
    d = decide(msg("a" * 50_000 + "!"), dest("x"), compile_policy(p))
    assert d.action is Action.ALLOW


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "r", "action": "deny", "text": "(?=x)"}, "RE2"),
        ({"name": "r", "action": "deny", "text": "["}, "missing ]"),
        ({"name": "r", "action": "redact"}, "needs `text` or `attachments`"),
        ({"name": "r", "action": "deny", "to": {"user": "bob"}}, "destination is a room"),
        ({"name": "r", "action": "deny", "attachments": {}}, "at least one of"),
        ({"name": "", "action": "deny"}, "at least 1 character"),
    ],
)
def test_invalid_rules_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        policy(rule)
