"""The policy and archive sections as `imbridge check` reports them: every mistake with
its path and line, before anything connects."""

from __future__ import annotations

import pytest

from imbridge.config import parse_config
from imbridge.errors import ConfigError

BASE = """
networks:
  corp-irc: {type: memory}
  public-matrix: {type: memory}
"""


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + text, env={})
    return [str(i) for i in info.value.issues]


def test_valid_policy_with_groups_barriers_and_attachments_loads() -> None:
    config = parse_config(
        BASE
        + """
policy:
  default: deny
  groups:
    a: [{network: corp-irc, room: "#a*"}]
    b: [{network: public-matrix}, {user: "*@b.example"}]
  barriers: [{name: wall, between: [a, b], notify_sender: true}]
  rules:
    - {name: files, action: redact, attachments: {max_bytes: 1000, types: ["video/*"]}}
    - {name: a-out, action: allow, from: {group: a}, to: {network: "public-*"}}
archive:
  legal_hold: [{name: case-1, room: "#a*"}]
""",
        env={},
    )
    assert [r.name for r in config.policy.rules] == ["files", "a-out"]
    assert config.policy.barriers[0].between == ("a", "b")


def test_names_are_unique_across_rules_and_barriers() -> None:
    found = issues("""
policy:
  groups: {a: [{network: corp-irc}], b: [{network: public-matrix}]}
  barriers: [{name: x, between: [a, b]}]
  rules:
    - {name: x, action: deny}
    - {name: default, action: deny}
""")
    assert any("policy.rules[0].name" in i and "duplicate name 'x'" in i for i in found)
    assert any("policy.rules[1].name" in i and "the default decision" in i for i in found)


def test_groups_must_exist_and_differ() -> None:
    found = issues("""
policy:
  groups: {a: [{network: corp-irc}]}
  barriers: [{name: w, between: [a, a]}, {name: v, between: [a, nope]}]
  rules: [{name: r, action: deny, from: {group: ghost}}]
""")
    assert any("policy.barriers[0].between" in i and "two different" in i for i in found)
    assert any("policy.barriers[1].between[1]" in i and "'nope'" in i for i in found)
    assert any("policy.rules[0].from.group" in i and "'ghost'" in i for i in found)


def test_globs_that_match_no_network_are_errors() -> None:
    found = issues("""
policy:
  groups: {a: [{network: corp-xmpp}]}
  rules: [{name: r, action: deny, to: {network: public-matrx}}]
""")
    assert any("policy.groups.a[0].network" in i for i in found)
    assert any(
        "policy.rules[0].to.network" in i and "matches no defined network" in i for i in found
    )


def test_bad_regex_and_short_key_are_reported_with_lines() -> None:
    found = issues("""
policy:
  rules:
    - name: r
      action: deny
      text: "(?<=x)y"
archive:
  encryption_key: short
  legal_hold: [{name: h}, {name: h}]
""")
    assert any("policy.rules[0].text" in i and "RE2" in i and "(line" in i for i in found)
    assert any("archive.encryption_key" in i and "32 characters" in i for i in found)
    assert not any("short" in i.split(":", 1)[0] for i in found)
