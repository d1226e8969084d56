"""The config contract: every bad config gets an error naming its YAML path and line, all
errors at once, secrets never echoed, and `run` refuses before connecting anywhere."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from imbridge import registry
from imbridge.cli import main
from imbridge.config import load_config, parse_config
from imbridge.config.schema import RawConfig
from imbridge.errors import ConfigError
from imbridge.testing import write_secret

GOOD = """\
bridge:
  state_dir: ./state
networks:
  a:
    type: memory
  b:
    type: memory
gateways:
  ops:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
"""

# (case id, yaml, expected "path (line N)", expected message fragment)
BAD: list[tuple[str, str, str, str]] = [
    ("unknown-top-key", GOOD + "extra: 1\n", "extra (line 13)", "unknown key"),
    (
        "unknown-network-key",
        GOOD.replace("type: memory\n  b:", "type: memory\n    colour: red\n  b:"),
        "networks.a.colour (line 6)",
        "unknown key",
    ),
    (
        "unknown-type",
        GOOD.replace("type: memory\n  b:", "type: telex\n  b:"),
        "networks.a.type (line 5)",
        "unknown network type 'telex'",
    ),
    (
        "missing-type",
        GOOD.replace("    type: memory\n  b:", "    nick: x\n  b:"),
        "networks.a.type (line 4)",
        "is required",
    ),
    (
        "undefined-network",
        GOOD.replace("network: b,", "network: nowhere,"),
        "gateways.ops.rooms[1].network (line 12)",
        "undefined network 'nowhere'",
    ),
    (
        "bad-direction",
        GOOD.replace('room: "#y"}', 'room: "#y", direction: sideways}'),
        "gateways.ops.rooms[1].direction (line 12)",
        "must be 'both', 'in' or 'out'",
    ),
    (
        "duplicate-room-in-two-gateways",
        GOOD
        + """  again:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#z"}
""",
        "gateways.again.rooms[0].room (line 15)",
        "already in gateway 'ops'",
    ),
    (
        "one-room-gateway",
        GOOD.replace('      - {network: b, room: "#y"}\n', ""),
        "gateways.ops.rooms (line 10)",
        "at least 2",
    ),
    (
        "bad-nick-format",
        GOOD.replace("    rooms:", '    nick_format: "<{nickname}> "\n    rooms:', 1),
        "gateways.ops.nick_format (line 10)",
        "unknown field {nickname}",
    ),
    (
        "bad-regex",
        GOOD
        + """policy:
  rules:
    - {name: r, action: deny, text: "(unclosed"}
""",
        "policy.rules[0].text (line 15)",
        "regular expression",
    ),
    (
        "bad-action",
        GOOD
        + """policy:
  rules:
    - {name: r, action: shred}
""",
        "policy.rules[0].action (line 15)",
        "must be",
    ),
    (
        "duplicate-rule-name",
        GOOD
        + """policy:
  rules:
    - {name: r, action: deny}
    - {name: r, action: allow}
""",
        "policy.rules[1].name (line 16)",
        "duplicate name 'r'",
    ),
    (
        "bad-default",
        GOOD + "policy:\n  default: maybe\n",
        "policy.default (line 14)",
        "must be 'allow' or 'deny'",
    ),
    (
        "retention-not-integer",
        GOOD + "archive:\n  retention_days: forever\n",
        "archive.retention_days (line 14)",
        "must be an integer",
    ),
    (
        "negative-retention",
        GOOD + "archive:\n  retention_days: -3\n",
        "archive.retention_days (line 14)",
        "greater than or equal to 1",
    ),
    (
        "bad-listen",
        GOOD.replace("  state_dir: ./state\n", "  state_dir: ./state\n  http: {listen: nowhere}\n"),
        "bridge.http.listen (line 3)",
        "HOST:PORT",
    ),
    (
        "bad-log-level",
        GOOD.replace("  state_dir: ./state\n", "  state_dir: ./state\n  log: {level: loud}\n"),
        "bridge.log.level (line 3)",
        "must be",
    ),
    (
        "unset-env",
        GOOD.replace(
            "    type: memory\n  b:", "    type: memory\n    nick: ${NO_SUCH_VAR_X}\n  b:"
        ),
        "networks.a.nick (line 6)",
        "environment variable NO_SUCH_VAR_X is not set",
    ),
    ("missing-secret-file", GOOD + "bridge2: 1\n".replace("bridge2: 1\n", ""), "", ""),
    (
        "duplicate-key",
        GOOD + "networks:\n  c: {type: memory}\n",
        "networks (line 13)",
        "duplicate key",
    ),
    (
        "rate-limit-zero",
        GOOD.replace(
            "    type: memory\n  b:",
            "    type: memory\n    rate_limit: {per_second: 0, burst: 1}\n  b:",
        ),
        "networks.a.rate_limit.per_second (line 6)",
        "greater than 0",
    ),
    (
        "policy-network-matches-nothing",
        GOOD
        + """policy:
  rules:
    - {name: r, action: deny, to: {network: "pub-*"}}
""",
        "policy.rules[0].to.network (line 15)",
        "matches no defined network",
    ),
    ("not-a-mapping", "- just\n- a list\n", "(top level) (line 1)", "must be a mapping"),
    ("invalid-yaml", "networks: {a: [}\n", "(top level) (line 1)", "invalid YAML"),
]
BAD = [case for case in BAD if case[2]]


@pytest.mark.parametrize(
    ("yaml_text", "where", "message"), [pytest.param(y, w, m, id=i) for i, y, w, m in BAD]
)
def test_bad_config_names_path_and_line(yaml_text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text, env={})
    rendered = [str(i) for i in caught.value.issues]
    assert any(r.startswith(f"{where}:") and message in r for r in rendered), rendered


def test_at_least_fifteen_distinct_bad_configs_are_covered() -> None:
    assert len({where for _, _, where, _ in BAD}) >= 15


def test_every_error_is_reported_at_once() -> None:
    text = GOOD.replace("network: b,", "network: nowhere,") + "archive:\n  retention_days: x\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(
            text.replace("type: memory\n  b:", "type: memory\n    colour: 1\n  b:"), env={}
        )
    paths = [i.path for i in caught.value.issues]
    assert paths == ["networks.a.colour", "gateways.ops.rooms[1].network", "archive.retention_days"]


def test_env_and_secret_files_resolve(tmp_path: Path) -> None:
    secret = tmp_path / "nick.secret"
    write_secret(secret, "from-file\n")
    cfg = parse_config(
        GOOD.replace("type: memory\n  b:", "type: memory\n    nick: ${RELAY_NICK}\n  b:"),
        env={"RELAY_NICK": "relay-bot"},
    )
    assert cfg.networks["a"].model_dump()["nick"] == "relay-bot"
    text = GOOD + "bridge2: x\n".replace("bridge2: x\n", "")
    text = text.replace(
        "state_dir: ./state",
        f"state_dir: ./state\n  http: {{listen: '127.0.0.1:1', metrics_token_file: {secret}}}",
    )
    cfg = parse_config(text, env={})
    token = cfg.bridge.http.metrics_token
    assert token is not None
    assert token.get_secret_value() == "from-file"
    assert "from-file" not in repr(cfg.bridge)


def test_secret_file_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace(
        "state_dir: ./state",
        f"state_dir: ./state\n  http: {{metrics_token_file: {tmp_path}/missing}}",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert str(caught.value.issues[0]).startswith(
        "bridge.http.metrics_token_file (line 3): cannot read"
    )


def _token_file_config(path: Path) -> str:
    return GOOD.replace(
        "state_dir: ./state",
        f"state_dir: ./state\n  http: {{listen: '127.0.0.1:1', metrics_token_file: {path}}}",
    )


def _refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(_token_file_config(path), env={})
    message = str(caught.value.issues[0])
    assert message.startswith("bridge.http.metrics_token_file (line 3): "), message
    assert "hunter2" not in str(caught.value)
    return message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_secret_file_other_users_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    secret = write_secret(tmp_path / "token", "hunter2\n")
    secret.chmod(mode)
    assert f"is open to other users (mode {mode:04o}): chmod 600" in _refusal(secret)
    secret.chmod(0o400)
    token = parse_config(_token_file_config(secret), env={}).bridge.http.metrics_token
    assert token is not None
    assert token.get_secret_value() == "hunter2"


def test_a_systemd_credential_is_read_whatever_its_group_bits(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o500)
    secret = write_secret(credentials / "token", "hunter2\n")
    secret.chmod(0o440)  # systemd grants the service by ACL where it cannot chown
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    token = parse_config(_token_file_config(secret), env=env).bridge.http.metrics_token
    assert token is not None
    assert token.get_secret_value() == "hunter2"


def test_a_secret_file_reached_through_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "token"
    link.symlink_to(write_secret(tmp_path / "real-token", "hunter2\n"))
    assert "is a symbolic link" in _refusal(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_secret_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "token", "hunter2\n")
    os.chown(secret, 65534, 65534)
    assert "is owned by uid 65534, not by this user or root" in _refusal(secret)


def test_a_secret_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "token").mkdir(mode=0o700)
    assert "is not a regular file" in _refusal(tmp_path / "token")


def test_secrets_never_appear_in_errors() -> None:
    text = GOOD.replace(
        "state_dir: ./state", "state_dir: ./state\n  http: {metrics_token: [hunter2]}"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    assert "hunter2" not in str(caught.value)
    assert "bridge.http.metrics_token (line 3)" in str(caught.value)


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["check", "-c", str(good)]) == 0
    assert "ok (2 networks, 1 gateways" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "extra: 1\n")
    assert main(["check", "-c", str(bad)]) == 2
    assert "extra (line 13): unknown key" in capsys.readouterr().err


def test_relative_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "bridge.yaml"
    path.parent.mkdir()
    path.write_text(GOOD)
    assert load_config(path).bridge.state_dir == tmp_path / "conf" / "state"


@pytest.mark.parametrize(
    ("yaml_text", "where"), [pytest.param(y, w, id=i) for i, y, w, _ in BAD[:6]]
)
def test_run_refuses_a_bad_config_before_touching_anything(
    tmp_path: Path, yaml_text: str, where: str
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml_text)
    proc = subprocess.run(
        [sys.executable, "-m", "imbridge.cli", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert where in proc.stderr
    assert not (tmp_path / "state").exists()  # no state opened, nothing connected


EXAMPLE = Path(__file__).parents[2] / "bridge.example.yaml"


def test_example_config_passes_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As shipped, in a fresh clone: only the `${VARS}` it names are set, no file beside it."""
    shutil.copy(EXAMPLE, tmp_path / "bridge.yaml")
    uncommented = "\n".join(line.split("#", 1)[0] for line in EXAMPLE.read_text().splitlines())
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", uncommented))
    assert names  # its secrets come from the environment
    for name in names:
        monkeypatch.setenv(name, f"{name.lower()}-value")
    assert main(["check", "-c", str(tmp_path / "bridge.yaml")]) == 0
    assert "ok (3 networks, 1 gateways, 3 rooms" in capsys.readouterr().out


def _keys(model: type[BaseModel]) -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        out.add(field.alias or name)
        for arg in (field.annotation, *get_args(field.annotation)):
            for inner in (arg, *get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    out |= _keys(inner)
    return out


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    models: list[type[BaseModel]] = [RawConfig]
    models += [registry.adapter_class(t).config_model for t in ("irc", "xmpp", "matrix")]
    missing = sorted(
        key
        for model in models
        for key in _keys(model)
        if not re.search(rf"\b{re.escape(key)}(_file)?:", text)
    )
    assert missing == []
