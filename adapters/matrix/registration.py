"""The appservice registration a homeserver loads (`imbridge matrix registration`), and
the two tokens it shares with the bridge.

The tokens are made once and kept in `state_dir` (0600, `imbridge.statefiles`) unless the
config gives them (`as_token_file`, `hs_token_file`): the registration printed today and
the daemon started tomorrow must agree, and the homeserver keeps what it loaded.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from imbridge.statefiles import create_private, read_private

from .config import MatrixConfig
from .proto.ghostnames import escape_localpart, namespace_regex, server_of

TOKEN_DIR = "matrix-appservice"  # noqa: S105 - a directory name, not a secret
ROUTE_PREFIX = "/networks"
"""Where the daemon's listener hands requests to a network (see `imbridge.endpoints`)."""


def _token(path: Path) -> str:
    create_private(path, secrets.token_urlsafe(32).encode())
    return read_private(path).decode().strip()


def tokens(name: str, config: MatrixConfig, state_dir: Path) -> tuple[str, str]:
    """(as_token, hs_token): the configured ones, else those kept in `state_dir`,
    made on first use."""
    app = config.appservice
    base = state_dir / TOKEN_DIR
    stem = escape_localpart(name)
    as_token = (
        app.as_token.get_secret_value() if app.as_token else _token(base / f"{stem}.as_token")
    )
    hs_token = (
        app.hs_token.get_secret_value() if app.hs_token else _token(base / f"{stem}.hs_token")
    )
    return as_token, hs_token


def appservice_id(name: str, config: MatrixConfig) -> str:
    return config.appservice.id or f"imbridge-{name}"


def push_url(name: str, config: MatrixConfig, listen: str | None) -> str:
    """Where the homeserver sends transactions: the configured `url`, else this
    network's path on the daemon's own listener."""
    if config.appservice.url is not None:
        return config.appservice.url
    if not listen:
        raise ValueError(
            f"networks.{name}.appservice.url is not set and neither is bridge.http.listen: "
            "the homeserver needs an address to push events to"
        )
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognised, not bound
        raise ValueError(
            f"bridge.http.listen ({listen}) is every address, which the homeserver cannot "
            f"dial: set networks.{name}.appservice.url to the address it should use"
        )
    return f"http://{listen}{ROUTE_PREFIX}/{name}"


def registration(
    name: str, config: MatrixConfig, *, state_dir: Path, listen: str | None
) -> dict[str, Any]:
    """The registration file's content (the spec's "Registration")."""
    as_token, hs_token = tokens(name, config, state_dir)
    server = server_of(config.user_id)
    return {
        "id": appservice_id(name, config),
        "url": push_url(name, config, listen),
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": config.user_id[1:].split(":", 1)[0],
        "namespaces": {
            "users": [
                {
                    "exclusive": True,
                    "regex": namespace_regex(config.appservice.ghost_prefix, server),
                }
            ],
            "aliases": [],
            "rooms": [],
        },
        "rate_limited": False,
    }
