"""Rules that cannot be walked around: invisible characters, look-alike letters, display
names, and formatted bodies too large to read. What is relayed stays what was sent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imbridge.commands.policy import policy_test
from imbridge.events import EventId, Message, Origin, RichText, Sender
from imbridge.policy import REDACTED, Action, compile_policy, decide
from imbridge.policytext import MAX_RICH_CHARS, normalise, policy_texts
from tests.unit.policy_cases import CONFIDENTIAL, dest, msg, policy

CONFIG = """
bridge: {state_dir: "STATE"}
networks:
  corp: {type: memory}
  public: {type: memory}
gateways:
  ops:
    rooms:
      - {network: corp, room: "#ops"}
      - {network: public, room: "#ops-public"}
policy:
  rules:
    - name: nothing-confidential-leaves
      action: deny
      text: "(?i)\\\\bconfidential\\\\b"
"""

EVASIONS = {
    "zero-width space": "the confi\u200bdential plan",
    "soft hyphen": "the confi\u00addential plan",
    "word joiner": "the confi\u2060dential plan",
    "fullwidth": "the " + "".join(chr(ord(c) + 0xFEE0) for c in "confidential") + " plan",
    "cyrillic look-alikes": "the \u0441\u043enfid\u0435ntial plan",
    "underscores": "the _confidential_ plan",
    "combining accent": "the confide\u0301ntial plan",
    "greek and upper case": "the CONFIDENT\u0399AL plan",
}


def run(tmp_path: Path, text: str, name: str | None = None) -> tuple[int, str]:
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG.replace("STATE", str(tmp_path / "state")))
    out, err = io.StringIO(), io.StringIO()
    code = policy_test(
        path, source="corp:#ops:alice", to="public", text=text, name=name, out=out, err=err
    )
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("text", EVASIONS.values(), ids=EVASIONS.keys())
def test_policy_test_denies_a_word_hidden_by_invisible_or_look_alike_characters(
    tmp_path: Path, text: str
) -> None:
    code, out = run(tmp_path, text)
    assert code == 1, out
    assert "decision: deny" in out
    assert "rule:     nothing-confidential-leaves" in out
    (read_as,) = [line for line in out.splitlines() if line.startswith("read as:")]
    assert " confidential " in read_as.split("(normalised")[0]  # shown as it was matched


def test_plain_text_has_no_normalised_line_and_other_words_still_pass(tmp_path: Path) -> None:
    code, out = run(tmp_path, "the public plan")
    assert code == 0
    assert "read as" not in out
    # Punctuation stays a word boundary: no false hit across it.
    assert run(tmp_path, "confi.dential")[0] == 0


def test_what_is_relayed_is_the_original_text() -> None:
    text = "a caf\u00e9 \uff21 menu"  # normalises to "a cafe a menu": nothing to deny
    decision = decide(msg(text), dest("public-matrix:!r"), compile_policy(policy(CONFIDENTIAL)))
    assert decision.action is Action.ALLOW
    assert isinstance(decision.event, Message)
    assert decision.event.text == text


def test_a_match_only_in_the_normalised_form_redacts_the_whole_text() -> None:
    rule = {"name": "r", "action": "redact", "text": r"(?i)\bconfidential\b"}
    event = msg("the confi\u200bdential plan")
    decision = decide(event, dest("public:#r"), compile_policy(policy(rule)))
    assert decision.action is Action.REDACT
    assert isinstance(decision.event, Message)
    assert decision.event.text == REDACTED


def test_normalised_form_folds_what_a_reader_does_not_see() -> None:
    assert normalise("Con\u00adfi\u200d\ufe0fden\u2060tial_Plan") == "confidential plan"
    assert normalise("\u2160\u2161 \ufb01le") == "iii file"  # roman numerals, ligature


def test_a_display_name_is_checked_like_the_text(tmp_path: Path) -> None:
    code, out = run(tmp_path, "hello", name="Confidential Falcon")
    assert code == 1
    assert "nothing-confidential-leaves" in out
    code, out = run(tmp_path, "hello", name="C\u043enfi\u200bdential")
    assert code == 1
    assert "read as:  'confidential'" in out


def _named(name: str, text: str = "hello") -> Message:
    origin = Origin(network="corp-irc", room="#ops", sender=Sender(id="alice", name=name))
    return Message(id=EventId("e1"), origin=origin, text=text)


def test_a_rule_can_target_the_display_name_alone() -> None:
    rule = {"name": "no-project-names", "action": "deny", "sender_name": r"(?i)falcon"}
    compiled = compile_policy(policy(rule))
    assert decide(_named("Project Falcon"), dest("public:#r"), compiled).action is Action.DENY
    # The text alone does not trip a name rule.
    assert decide(_named("bob", "falcon"), dest("public:#r"), compiled).action is Action.ALLOW


def test_a_redact_rule_hides_a_matching_display_name() -> None:
    rule = {"name": "r", "action": "redact", "text": r"(?i)\bconfidential\b"}
    decision = decide(_named("Confidential Bob"), dest("public:#r"), compile_policy(policy(rule)))
    assert decision.action is Action.REDACT
    assert decision.event is not None
    assert decision.event.origin.sender.name == REDACTED
    assert decision.event.origin.sender.id == "alice"


def test_a_formatted_body_too_large_to_read_crosses_without_its_formatting() -> None:
    hidden = "<b>" + "x " * (MAX_RICH_CHARS // 2) + "</b> confidential"
    event = msg("a long harmless text", rich=RichText(hidden))
    texts = policy_texts(event)
    assert texts.rich_dropped
    decision = decide(
        event, dest("public-matrix:!r"), compile_policy(policy(CONFIDENTIAL)), texts=texts
    )
    assert decision.action is Action.ALLOW
    assert isinstance(decision.event, Message)
    assert decision.event.rich is None  # the unread markup never crosses
    assert decision.event.text == "a long harmless text"
    assert "formatting dropped" in decision.reason


def test_texts_are_searched_once_per_event_whatever_the_destinations() -> None:
    rich = RichText("<p>" + "word " * 2000 + "</p>")
    event = msg("word " * 2000, rich=rich)
    texts = policy_texts(event)
    compiled = compile_policy(policy(CONFIDENTIAL))
    for n in range(5):
        decide(event, dest(f"public-matrix:!r{n}"), compiled, texts=texts)
    # One answer per (pattern, question), however many destinations asked.
    assert len(texts._seen) == 1
