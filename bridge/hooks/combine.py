"""How the hooks' answers and the rules' decision make one `Decision`: pure, no I/O.

Hooks only ever narrow what the rules allowed (they are asked for no destination the
rules denied). In configuration order, the first hook that denies decides, and a hook that
failed with `on_error: deny` counts as denying; otherwise the spans of every redacting
hook are removed together and the rules run again on what is left, so a rule's redaction
or deny still applies to the hook-redacted text. Every hook's answer is kept on the
decision (`Decision.hooks`), so the archive shows each one by name, allow included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from imbridge.events import Event
from imbridge.hooks.verdict import HookAction, Verdict, with_spans_redacted
from imbridge.policy import HOOK_RULE_PREFIX, Action, CompiledPolicy, Decision, Destination, decide

HOOK_PREFIX = HOOK_RULE_PREFIX


@dataclass(frozen=True, slots=True)
class Answer:
    """One hook's answer for one event: a verdict per destination, or the failure."""

    hook: str
    verdicts: dict[Destination, Verdict] | None
    error: str = ""
    on_error: str = "deny"
    notify_sender: bool = False


def rule_name(hook: str) -> str:
    """How a hook appears where a rule name would (archive `rule`, logs, notices)."""
    return HOOK_PREFIX + hook


def _note(answer: Answer, dest: Destination) -> tuple[str, str, str]:
    if answer.verdicts is None:
        return (answer.hook, f"error:{answer.on_error}", answer.error)
    v = answer.verdicts[dest]
    return (answer.hook, v.action.value, v.reason)


def combine(
    event: Event,
    dest: Destination,
    ruled: Decision,
    answers: Sequence[Answer],
    policy: CompiledPolicy,
    *,
    quoted: str | None = None,
) -> Decision:
    """The final decision for `dest`, given the rules' one (not a deny) and the hooks'."""
    notes = tuple(_note(a, dest) for a in answers)
    spans: list[tuple[int, int]] = []
    redactors: list[Answer] = []
    for a in answers:
        if a.verdicts is None:
            if a.on_error == "deny":
                return Decision(
                    action=Action.DENY,
                    rule=rule_name(a.hook),
                    reason=f"hook {a.hook!r} failed ({a.error}); on_error: deny",
                    notify_sender=a.notify_sender,
                    hooks=notes,
                )
            continue
        v = a.verdicts[dest]
        if v.action is HookAction.DENY:
            why = f": {v.reason}" if v.reason else ""
            return Decision(
                action=Action.DENY,
                rule=rule_name(a.hook),
                reason=f"denied by hook {a.hook!r}{why}",
                notify_sender=a.notify_sender,
                hooks=notes,
            )
        if v.action is HookAction.REDACT:
            spans += v.spans
            redactors.append(a)
    if not redactors:
        return dataclasses.replace(ruled, hooks=notes)
    first = redactors[0]
    notify = any(a.notify_sender for a in redactors)
    redacted = with_spans_redacted(event, spans)
    if redacted is None:
        return Decision(
            action=Action.DENY,
            rule=rule_name(first.hook),
            reason=f"redacted by hook {first.hook!r}: nothing left",
            notify_sender=notify,
            hooks=notes,
        )
    again = decide(redacted, dest, policy, quoted=quoted)
    if again.event is None:
        return dataclasses.replace(again, hooks=notes)
    names = ", ".join(repr(a.hook) for a in redactors)
    return Decision(
        action=Action.REDACT,
        rule=rule_name(first.hook),
        reason=f"redacted by hook {names}, then {again.action.value} ({again.reason})",
        notify_sender=notify or again.notify_sender,
        event=again.event,
        quoted=again.quoted,
        hooks=notes,
    )
