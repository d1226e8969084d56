"""The `type: matrix` section: what `imbridge check` accepts and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from imbridge.adapters.matrix import MatrixConfig
from imbridge.config import parse_config
from imbridge.errors import ConfigError
from imbridge.testing import write_secret

NETWORK = """
networks:
  mx:
    type: matrix
    homeserver: http://127.0.0.1:8008/
    user_id: "@relay:localhost"
{extra}
gateways:
  g:
    rooms:
      - {{network: mx, room: "!a"}}
      - {{network: mx, room: "#b:localhost"}}
"""


def test_token_file_is_read_and_never_shown(tmp_path: Path) -> None:
    write_secret(tmp_path / "token", "syt_secret\n")
    text = NETWORK.format(extra=f"    access_token_file: {tmp_path / 'token'}")
    net = parse_config(text).networks["mx"]
    assert isinstance(net, MatrixConfig)
    assert net.access_token is not None
    assert net.access_token.get_secret_value() == "syt_secret"
    assert net.homeserver == "http://127.0.0.1:8008"
    assert "syt_secret" not in repr(net)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "exactly one of access_token"),
        ("    access_token: a\n    password: b", "exactly one of access_token"),
        ("    access_token: a\n    media: copy", "media"),
        ("    access_token: a\n    nickname: x", "nickname"),
    ],
)
def test_bad_sections_are_refused_with_their_path(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(NETWORK.format(extra=extra))
    assert message in str(err.value)
    assert "networks.mx" in str(err.value)


def test_user_id_and_homeserver_are_checked() -> None:
    base = {"type": "matrix", "access_token": "t"}
    with pytest.raises(ValueError, match="full Matrix user id"):
        MatrixConfig.model_validate({**base, "homeserver": "https://h", "user_id": "relay"})
    with pytest.raises(ValueError, match="http"):
        MatrixConfig.model_validate({**base, "homeserver": "h.example", "user_id": "@r:h"})
