"""Lexicons and the `flag` action: what a compliance officer expects to land in the review
queue, and that flagging never changes what is relayed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.commands.policy import policy_test
from imbridge.config import parse_config
from imbridge.config.schema import Archive
from imbridge.errors import ConfigError
from imbridge.policy import Action, compile_policy, decide
from imbridge.testing import sqlite_schema
from tests.unit.policy_cases import dest, msg, policy

INSIDER = {"insider": {"words": ["inside information", "IPO", "Café Noir"]}}
FLAG_RULE: dict[str, Any] = {"name": "insider-words", "action": "flag", "lexicons": ["insider"]}


def flags(text: str, *rules: dict[str, Any], default: str = "allow") -> tuple[str, ...]:
    compiled = compile_policy(policy(*rules, default=default, lexicons=INSIDER))
    return decide(msg(text), dest("public-matrix"), compiled).flags


@pytest.mark.parametrize(
    "text",
    [
        "we have INSIDE   information today",  # case, and any run of spaces in a phrase
        "the ipo is monday",
        "meet at cafe noir",  # accents ignored both ways
        "meet at CAFÉ NOIR",
        "ipo.",
        "(IPO)",
    ],
)
def test_lexicon_words_flag_whatever_the_case_and_accents(text: str) -> None:
    assert flags(text, FLAG_RULE) == ("insider-words",)


@pytest.mark.parametrize("text", ["a hippo swims", "insideinformation", "cafenoir", "hello"])
def test_lexicon_matches_whole_words_only(text: str) -> None:
    assert flags(text, FLAG_RULE) == ()


def test_flag_rule_never_decides_and_an_earlier_allow_does_not_hide_it() -> None:
    allow_all = {"name": "everything", "action": "allow"}
    compiled = compile_policy(policy(allow_all, FLAG_RULE, default="deny", lexicons=INSIDER))
    d = decide(msg("the IPO date"), dest("public-matrix"), compiled)
    assert (d.action, d.rule, d.flags) == (Action.ALLOW, "everything", ("insider-words",))
    only_flag = compile_policy(policy(FLAG_RULE, default="deny", lexicons=INSIDER))
    d = decide(msg("the IPO date"), dest("public-matrix"), only_flag)
    assert (d.action, d.rule, d.flags) == (Action.DENY, "default", ("insider-words",))


def test_flag_true_on_a_deny_rule_flags_what_it_denies() -> None:
    rule = {"name": "no-secrets", "action": "deny", "text": "secret", "flag": True}
    compiled = compile_policy(policy(rule))
    d = decide(msg("a secret"), dest("public-matrix"), compiled)
    assert (d.action, d.flags) == (Action.DENY, ("no-secrets",))
    assert decide(msg("nothing"), dest("public-matrix"), compiled).flags == ()


def test_a_reply_quoting_a_lexicon_word_is_flagged() -> None:
    compiled = compile_policy(policy(FLAG_RULE, lexicons=INSIDER))
    d = decide(msg("agreed"), dest("public-matrix"), compiled, quoted="about the IPO")
    assert d.flags == ("insider-words",)


def test_lexicon_file_is_read_at_load_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("# trading desk words\nfront running\n\nwash trade  # x\n")
    (tmp_path / "bridge.yaml").write_text(
        "networks: {a: {type: memory}}\n"
        "policy:\n"
        "  lexicons: {desk: {file: words.txt, words: [spoofing]}}\n"
        "  rules: [{name: desk, action: flag, lexicons: [desk]}]\n"
    )
    from imbridge.config.load import load_config  # noqa: PLC0415 - the function under test

    config = load_config(tmp_path / "bridge.yaml")
    assert config.policy.lexicons["desk"].words == ("spoofing", "front running", "wash trade")
    compiled = compile_policy(config.policy)
    assert decide(msg("no WASH trade"), dest("a"), compiled).flags == ("desk",)


def test_unknown_lexicon_is_a_config_error_naming_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "networks: {a: {type: memory}}\n"
            "policy:\n"
            "  rules:\n"
            "    - {name: x, action: flag, lexicons: [nope]}\n"
        )
    text = str(caught.value)
    assert "unknown lexicon 'nope'" in text
    assert "line 2" in text


def test_a_flagged_event_is_one_flag_record_in_the_same_commit(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    sqlite_schema(conn, ARCHIVE_MIGRATIONS)
    store = ArchiveStore(Archive(log_checkpoints=False), state_dir=tmp_path)
    compiled = compile_policy(policy(FLAG_RULE, lexicons=INSIDER))
    event = msg("the ipo")
    decisions = [(dest(d), decide(event, dest(d), compiled)) for d in ("m:#a", "x:#b")]
    conn.execute("BEGIN")
    store.record_event(conn, event, decisions)
    conn.execute("COMMIT")
    rows = conn.execute("SELECT kind, event_id, rule FROM archive_records ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["event", "decision", "decision", "flag"]
    assert rows[-1][1:] == ("e1", "insider-words")


def test_policy_test_prints_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "networks: {a: {type: memory}, b: {type: memory}}\n"
        "gateways: {g: {rooms: [{network: a, room: '#x'}, {network: b, room: '#y'}]}}\n"
        "policy:\n"
        "  lexicons: {insider: {words: [ipo]}}\n"
        "  rules: [{name: insider-words, action: flag, lexicons: [insider]}]\n"
    )
    code = policy_test(path, source="a:#x:alice", to="b", text="the IPO", attachments=[])
    assert code == 0
    assert "flagged:  insider-words (put in the review queue)" in capsys.readouterr().out
