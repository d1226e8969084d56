"""Typed model of a `networks.<name>` section with `type: xmpp`.

Validated before anything connects, so a typo in a JID or a TLS mode is reported with its
YAML path instead of surfacing as a login failure at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from imbridge.adapter import NetworkConfig


class XmppConfig(NetworkConfig):
    """A client account that joins MUC rooms (XEP-0045) and relays through them."""

    type: Literal["xmpp"]
    jid: str = Field(min_length=3)
    password: SecretStr
    host: str | None = None
    """Server to connect to; by default the JID's domain, through SRV records."""
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: Literal["starttls", "direct", "plain"] = "starttls"
    """`plain` is for loopback test servers only: the password then crosses unencrypted."""
    tls_verify: bool = True
    ca_file: Path | None = None
    """Extra CA bundle to verify the server against (self-signed test servers)."""
    nick: str = Field(default="relay", min_length=1, max_length=64)
    room_passwords: dict[str, SecretStr] = Field(default_factory=dict)
    """Passwords of password-protected rooms, by room JID."""
    ack_timeout: float = Field(default=10.0, gt=0, le=300)
    """How long `send` waits for the room's reflection before the outbox retries."""
    ping_interval: float = Field(default=60.0, gt=0)
    """XEP-0199 keep-alive: a silent dead connection is noticed within about this time."""
    reconnect_max: float = Field(default=60.0, gt=0)
    """Upper bound of the reconnect backoff, in seconds (before jitter)."""
    catch_up: bool = True
    """After a restart, fetch what the rooms said meanwhile from their MAM archive."""

    @field_validator("jid")
    @classmethod
    def _bare_jid(cls, value: str) -> str:
        local, at, domain = value.partition("@")
        if not at or not local or not domain or "/" in local or " " in value:
            raise ValueError("must be a JID like relay@example.org")
        return value
