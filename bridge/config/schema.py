"""Typed, frozen models of the config file; unknown keys are rejected everywhere.

Network sections are validated by each adapter's own `config_model` (see `load`), so
this module knows only the keys common to all networks.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from imbridge.adapter import NetworkConfig

Direction = Literal["both", "in", "out"]
NICK_FIELDS = frozenset({"nick", "network", "room", "gateway", "user"})


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    message_text: bool = False
    """Log message text at info; off by default so logs hold no conversation."""


class HttpConfig(Strict):
    listen: str | None = None
    metrics_token: SecretStr | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9465")
        return value


class BridgeSection(Strict):
    state_dir: Path = Path("./state")
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    drain_seconds: float = Field(default=8.0, gt=0, le=60)
    """How long SIGTERM waits for in-flight sends before exiting."""


class RoomRef(Strict):
    network: str = Field(min_length=1)
    room: str = Field(min_length=1)
    direction: Direction = "both"
    """`in`: only feeds the gateway; `out`: only receives from it."""


class Gateway(Strict):
    nick_format: str = "<{nick}@{network}> "
    rooms: tuple[RoomRef, ...] = Field(min_length=2)

    @field_validator("nick_format")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"is not a valid format string: {exc}") from None
        unknown = names - NICK_FIELDS
        if unknown:
            known = ", ".join(sorted(NICK_FIELDS))
            raise ValueError(f"unknown field {{{sorted(unknown)[0]}}}; use any of {known}")
        return value


class Match(Strict):
    network: str = "*"
    room: str = "*"
    user: str = "*"


def _compile(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    return pattern


class Rule(Strict):
    name: str = Field(min_length=1)
    action: Literal["allow", "deny", "redact"]
    from_: Match = Field(default=Match(), alias="from")
    to: Match = Match()
    text: str | None = None
    notify_sender: bool = False

    @field_validator("text")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else _compile(value)


class Policy(Strict):
    default: Literal["allow", "deny"] = "allow"
    rules: tuple[Rule, ...] = ()


class Archive(Strict):
    enabled: bool = True
    retention_days: int = Field(default=2557, ge=1)
    notice: str | None = None


class RawConfig(Strict):
    """The file as validated before each network is handed to its adapter's model."""

    bridge: BridgeSection = BridgeSection()
    networks: dict[str, dict[str, Any]] = Field(min_length=1)
    gateways: dict[str, Gateway] = Field(default_factory=dict)
    policy: Policy = Policy()
    archive: Archive = Archive()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole, valid configuration: what the daemon and the commands run on."""

    bridge: BridgeSection
    networks: Mapping[str, NetworkConfig]
    gateways: Mapping[str, Gateway]
    policy: Policy
    archive: Archive
    source: Path | None = None
