"""The rule engine, table-driven: each row of `policy_cases` and `policy_attachment_cases`
is one promise a security team relies on; then what the table cannot say."""

from __future__ import annotations

import re
from typing import Any

import pytest

from imbridge.events import (
    Edit,
    Message,
)
from imbridge.policy import (
    Action,
    Decision,
    compile_policy,
    decide,
    sender_notice,
)
from tests.unit.policy_attachment_cases import ATTACHMENT_CASES
from tests.unit.policy_cases import (
    BARRIER,
    CONFIDENTIAL,
    GROUPS,
    REDACT_CARDS,
    Case,
    dest,
    msg,
    policy,
)
from tests.unit.policy_cases import (
    CASES as RULE_CASES,
)

CASES = RULE_CASES + ATTACHMENT_CASES


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
    plan = msg("the CONFIDENTIAL plan")
    d = decide(plan, dest("public-matrix:!r:x"), compile_policy(policy(CONFIDENTIAL)))
    notice = sender_notice(d, plan)
    assert notice is not None
    assert "no-confidential-out" in notice
    assert "confidential" not in notice.lower().replace("no-confidential-out", "")
    card = msg("1234-5678-9012-3456")
    told = {**REDACT_CARDS, "notify_sender": True}
    redacted = decide(card, dest("x"), compile_policy(policy(told)))
    assert "parts removed" in str(sender_notice(redacted, card))


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
        ({"name": "r", "action": "redact"}, "needs `text`, `sender_name` or `attachments`"),
        ({"name": "r", "action": "deny", "to": {"user": "bob"}}, "destination is a room"),
        ({"name": "r", "action": "deny", "attachments": {}}, "at least one of"),
        ({"name": "", "action": "deny"}, "at least 1 character"),
    ],
)
def test_invalid_rules_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        policy(rule)
