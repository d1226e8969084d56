"""Matrix appservice mode without a homeserver: the registration an operator installs,
the ghost ids it claims, and the config rules."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from imbridge.adapters.matrix.proto.ghostnames import (
    display_name,
    escape_localpart,
    ghost_id,
    is_ghost,
    unescape_localpart,
)
from imbridge.cli import main
from imbridge.config.load import parse_config
from imbridge.errors import ConfigError
from imbridge.testing import write_secret


def _config(tmp_path: Path, **matrix: object) -> Path:
    net = {
        "type": "matrix",
        "homeserver": "http://127.0.0.1:8008",
        "user_id": "@imbridge:example.org",
        "mode": "appservice",
        **matrix,
    }
    body = {
        "bridge": {"state_dir": str(tmp_path / "state"), "http": {"listen": "127.0.0.1:8080"}},
        "networks": {"mx": net, "irc": {"type": "irc", "host": "irc.example", "nick": "r"}},
        "gateways": {"g": {"rooms": [{"network": "mx", "room": "!a"},
                                     {"network": "irc", "room": "#a"}]}},
    }  # fmt: skip
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps(body))
    return path


def test_registration_is_loadable_yaml_claiming_every_ghost_and_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    assert main(["matrix", "registration", "-c", str(path)]) == 0
    first = yaml.safe_load(capsys.readouterr().out)
    assert first["id"] == "imbridge-mx"
    assert first["url"] == "http://127.0.0.1:8080/networks/mx"
    assert first["sender_localpart"] == "imbridge"
    assert first["rate_limited"] is False
    users = first["namespaces"]["users"]
    assert len(users) == 1
    assert users[0]["exclusive"] is True
    ghost = ghost_id("_imb_", "irc", "Alice", "example.org")
    assert re.fullmatch(users[0]["regex"], ghost)
    assert not re.fullmatch(users[0]["regex"], "@alice:example.org")
    assert len(first["as_token"]) >= 32
    assert first["as_token"] != first["hs_token"]
    # The daemon started later must agree with what the homeserver loaded.
    assert main(["matrix", "registration", "-c", str(path)]) == 0
    again = yaml.safe_load(capsys.readouterr().out)
    assert (again["as_token"], again["hs_token"]) == (first["as_token"], first["hs_token"])
    for token_file in (tmp_path / "state" / "matrix-appservice").iterdir():
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_registration_uses_the_token_files_and_url_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_secret(tmp_path / "as.token", "as-secret\n")
    write_secret(tmp_path / "hs.token", "hs-secret\n")
    path = _config(tmp_path, appservice={
        "as_token_file": str(tmp_path / "as.token"), "hs_token_file": str(tmp_path / "hs.token"),
        "url": "https://bridge.example.org/networks/mx/", "ghost_prefix": "irc_",
    })  # fmt: skip
    assert main(["matrix", "registration", "-c", str(path)]) == 0
    reg = yaml.safe_load(capsys.readouterr().out)
    assert (reg["as_token"], reg["hs_token"]) == ("as-secret", "hs-secret")
    assert reg["url"] == "https://bridge.example.org/networks/mx"
    assert reg["namespaces"]["users"][0]["regex"].startswith("@irc_")


def test_registration_without_an_appservice_network_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, mode="client", access_token="t")
    assert main(["matrix", "registration", "-c", str(path)]) == 2
    assert "mode: appservice" in capsys.readouterr().err


def test_registration_refuses_a_wildcard_listen_without_a_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    path.write_text(path.read_text().replace("127.0.0.1:8080", "0.0.0.0:8080"))
    assert main(["matrix", "registration", "-c", str(path)]) == 2
    assert "appservice.url" in capsys.readouterr().err


def test_appservice_mode_refuses_an_access_token() -> None:
    text = json.dumps({
        "networks": {"mx": {"type": "matrix", "homeserver": "http://h", "user_id": "@b:h",
                            "mode": "appservice", "access_token": "x"}},
    })  # fmt: skip
    with pytest.raises(ConfigError, match="as_token"):
        parse_config(text)


@given(st.text(min_size=1, max_size=40))
def test_ghost_localparts_are_valid_and_name_one_sender_each(nick: str) -> None:
    escaped = escape_localpart(nick)
    assert re.fullmatch(r"[a-z0-9._=-]+", escaped)
    assert unescape_localpart(escaped) == nick


def test_ghost_ids_keep_networks_apart_and_fall_in_the_namespace() -> None:
    assert ghost_id("_imb_", "irc", "Bob", "hs") == "@_imb_irc__bob:hs"
    assert ghost_id("_imb_", "a_b", "c", "hs") != ghost_id("_imb_", "a", "b_c", "hs")
    assert is_ghost("@_imb_irc__bob:hs", "_imb_", "hs")
    assert not is_ghost("@_imb_irc__bob:other", "_imb_", "hs")


def test_a_ghost_display_name_carries_no_bidi_or_invisible_characters() -> None:
    assert display_name("mal\u202eory\u200b") == "malory"
