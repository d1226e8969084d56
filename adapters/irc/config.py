"""The `networks.<name>` section with `type: irc`, as a typed, frozen model.

Secrets are `SecretStr` so they never appear in a repr or a log line; `password_file`,
`sasl.password_file` and `nickserv.password_file` are resolved by the config loader before
this model sees them. Defaults are the safe ones: TLS verified against the system CAs, and
flood control that stock ngircd and InspIRCd accept without disconnecting the relay.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from imbridge.adapter import NetworkConfig
from imbridge.adapters.irc.proto.names import irc_lower
from imbridge.hosts import is_loopback_host

# RFC 2812 §2.3.1: a nick starts with a letter or special, then letters, digits, specials, -.
_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")
# RFC 2812 §1.3: channel names start with & # + !, and hold no space, comma, BEL or colon.
_CHANNEL = re.compile(r"^[#&+!][^\x00\x07\r\n ,:]{1,199}$")


def valid_nick(value: str) -> str:
    if not _NICK.match(value) or len(value) > 30:
        raise ValueError("must be a valid IRC nick (letters, digits, []\\`_^{|}- ; at most 30)")
    return value


def valid_channel(value: str) -> str:
    if not _CHANNEL.match(value):
        raise ValueError("must be an IRC channel name such as #ops")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SaslConfig(_Section):
    """SASL during registration (IRCv3 `sasl`): PLAIN with a password, or EXTERNAL with
    the TLS client certificate (`tls_client_cert`). A failed SASL login aborts the
    connection rather than continuing unauthenticated."""

    mechanism: Literal["PLAIN", "EXTERNAL"] = "PLAIN"
    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _plain_needs_password(self) -> SaslConfig:
        if self.mechanism == "PLAIN" and (self.username is None or self.password is None):
            raise ValueError("PLAIN needs username and password")
        return self


class NickServConfig(_Section):
    """Services login after registration, for networks without SASL."""

    password: SecretStr
    service: str = "NickServ"
    command: str = "IDENTIFY {password}"

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return valid_nick(value)


class FloodConfig(_Section):
    """Per-connection flood control: token buckets of lines and of bytes, and a window of
    lines and bytes the server has not yet confirmed processing (a PING it answered). The window is
    what keeps a throttled relay under a server's receive queue (InspIRCd's stock 8 KiB):
    however fast the bucket, the relay never has more than that outstanding."""

    burst: int = Field(default=5, ge=1, le=100_000)
    per_second: float = Field(default=8.0, gt=0)
    burst_bytes: int = Field(default=1024, ge=512, le=16_777_216)
    bytes_per_second: float = Field(default=240.0, gt=0)
    """ngircd reads 256 bytes per second from a client before it penalises it; paced
    under that, short lines flow at `per_second` and long ones at about 1 per 2 s."""
    max_unacked_lines: int = Field(default=10, ge=2, le=100_000)
    max_unacked_bytes: int = Field(default=4096, ge=1024, le=16_777_216)


class IrcConfig(NetworkConfig):
    type: Literal["irc"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default 6697 with TLS, 6667 without."""
    tls: bool = True
    allow_cleartext: bool = False
    """`tls: false` with a password (server, SASL or NickServ) is refused unless `host` is
    loopback or this is true: the password would cross the network in clear."""
    tls_verify: bool = True
    tls_ca_file: Path | None = None
    tls_client_cert: Path | None = None
    """PEM file with the client certificate (and key, unless `tls_client_key`): CertFP and
    SASL EXTERNAL."""
    tls_client_key: Path | None = None
    password: SecretStr | None = None
    """Server password (PASS)."""
    nick: str
    alt_nicks: tuple[str, ...] = ()
    """Tried in order when `nick` is taken; then `nick_`, `nick__`, `nick` + digits."""
    username: str | None = None
    realname: str = "imbridge relay"
    sasl: SaslConfig | None = None
    nickserv: NickServConfig | None = None
    channel_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """Keys (`+k`) of the channels that need one, by channel name."""
    rejoin_on_kick: bool = True
    rejoin_delay: float = Field(default=5.0, ge=0)
    max_lines: int = Field(default=5, ge=1, le=100)
    """Wire lines one relayed message may take before, when `bridge.http.public_url` is
    set, it is sent as its first lines and a link to its full text; without a public URL
    every line is sent, paced by flood control. Nothing is ever cut."""
    edit_window: float = Field(default=3.0, ge=0, le=60)
    """Seconds a correction line waits for further edits of the same message, so quick
    fixes become one line (nothing else waiting behind it is delayed); 0: at once."""
    flood: FloodConfig = FloodConfig()
    capabilities: tuple[str, ...] = (
        "server-time",
        "message-tags",
        "echo-message",
        "multi-prefix",
        "away-notify",
        "account-tag",
        "extended-join",
        "account-notify",
    )
    """IRCv3 capabilities requested when the server offers them."""
    connect_timeout: float = Field(default=30.0, gt=0)
    """For one connection attempt, TCP and TLS to registration (001)."""
    send_timeout: float = Field(default=45.0, gt=0)
    """How long `send` waits for a line to be written (or echoed) before the outbox
    retries it; below the outbox's own 60 s."""
    ping_interval: float = Field(default=60.0, gt=0)
    """Idle time after which the relay PINGs the server; no answer in as long again means
    the connection is dead and is replaced."""
    reconnect_min_delay: float = Field(default=1.0, gt=0)
    reconnect_max_delay: float = Field(default=300.0, gt=0)
    throttled_delay: float = Field(default=60.0, ge=0)
    """Least wait after the server refused us for reconnecting too fast or banned us."""
    reaction_window: float = Field(default=2.0, ge=0)
    """Seconds the reactions to one message are gathered into one line, where the server
    does not take the `+draft/react` client tag (ngircd)."""

    @field_validator("nick")
    @classmethod
    def _nick(cls, value: str) -> str:
        return valid_nick(value)

    @field_validator("alt_nicks")
    @classmethod
    def _alt_nicks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(valid_nick(v) for v in value)

    @field_validator("channel_keys")
    @classmethod
    def _channels(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, key in value.items():
            valid_channel(name)
            if not key.get_secret_value() or any(c in key.get_secret_value() for c in " ,\r\n\0"):
                raise ValueError(f"key of {name} must be one word")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> IrcConfig:
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError("reconnect_max_delay must not be below reconnect_min_delay")
        if self.sasl and self.sasl.mechanism == "EXTERNAL" and self.tls_client_cert is None:
            raise ValueError("sasl EXTERNAL needs tls_client_cert")
        if (self.tls_client_cert or self.tls_client_key) and not self.tls:
            raise ValueError("a client certificate needs tls: true")
        return self

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> IrcConfig:
        secret = self.password or (self.sasl and self.sasl.password) or self.nickserv
        if self.tls or not secret or self.allow_cleartext or is_loopback_host(self.host):
            return self
        message = (
            f"false sends the password to {self.host} in clear: use tls: true, or set "
            "allow_cleartext: true if the path is private"
        )
        error = InitErrorDetails(
            type=PydanticCustomError("cleartext", message), loc=("tls",), input=None
        )
        raise ValidationError.from_exception_data(type(self).__name__, [error])

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 6697 if self.tls else 6667

    def key_for(self, channel: str) -> str:
        """The key of `channel` (case-insensitive), or '' when it has none."""
        folded = irc_lower(channel)
        for name, key in self.channel_keys.items():
            if irc_lower(name) == folded:
                return key.get_secret_value()
        return ""
