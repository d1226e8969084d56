"""Typed model of a `networks.<name>` section with `type: xmpp`.

Validated before anything connects, so a typo in a JID or a TLS mode is reported with its
YAML path instead of surfacing as a login failure at run time. One model covers both
modes (`client`, the default, and `component`, XEP-0114), because the core validates a
network section with the one model its adapter type names; what each mode needs, and
what it must not be given, is checked here and reported at the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from imbridge.adapter import NetworkConfig
from imbridge.hosts import is_loopback_host
from imbridge.safefetch import check_origins

COMPONENT_PORT = 5347  # XEP-0114 §2, and Prosody's default `component_ports`
_CLIENT_ONLY = ("jid", "password", "tls", "tls_verify", "ca_file", "allow_cleartext")
_COMPONENT_ONLY = ("component", "secret")
_UPLOAD_ONLY = ("media_max_bytes", "media_timeout", "upload_service", "media_allow_origins")


class XmppConfig(NetworkConfig):
    """A client account that joins MUC rooms (XEP-0045) and relays through them, or, in
    component mode, a server component that relays each user under a JID of their own."""

    type: Literal["xmpp"]
    mode: Literal["client", "component"] = "client"
    """`component`: connect as an external component (XEP-0114); every relayed user gets
    a puppet JID `<sender>@<component>` and speaks in the room under their own nick."""
    jid: str | None = Field(default=None, min_length=3)
    """Client mode: the relay's account."""
    password: SecretStr | None = None
    component: str | None = Field(default=None, min_length=1)
    """Component mode: the component's domain, as in Prosody's `Component "…"` line."""
    secret: SecretStr | None = None
    """Component mode: the server's `component_secret` (or give `secret_file`)."""
    host: str | None = None
    """Server to connect to; by default the JID's domain, through SRV records. Component
    mode: required, the host of the server's component port."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default 5222 (SRV) for a client; 5347 for a component."""
    tls: Literal["starttls", "direct", "plain"] = "starttls"
    """`plain` sends the password unencrypted: refused unless the server (`host`, else the
    JID's domain) is loopback or `allow_cleartext` is true."""
    allow_cleartext: bool = False
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
    direct_messages: bool = True
    """Take private messages to the relay (chat messages to its JID, private messages
    through a room): archived, never relayed, each sender answered once. A client
    announces itself available for this, since a server passes chat messages addressed
    to a bare JID only to a client that did; `false` sends no such presence and ignores
    private messages altogether."""
    media: Literal["upload", "link"] = "upload"
    """Attachments from other networks: `upload` copies each to the server's HTTP File
    Upload service (XEP-0363) when it offers one, and sends that URL; `link` sends the
    original URL. Whatever stops an upload, the original link goes instead."""
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    """Largest file to re-upload (the service's own limit applies too); larger: a link."""
    media_timeout: float = Field(default=20.0, gt=0, le=45)
    """Seconds the uploads of one message may take in all before the rest go as links.
    Kept under the outbox's one-minute limit for a send, with `ack_timeout` after it."""
    media_allow_origins: tuple[str, ...] = ()
    """`scheme://host[:port]` origins an upload may download from although they are not
    public addresses (an internal file host). Anything else on loopback, private or
    link-local addresses is never fetched: it goes as its original link."""
    upload_service: str | None = Field(default=None, min_length=1)
    """JID of the upload service; by default found through disco#items of the server's
    domain (component mode: of the domain the component is a subdomain of)."""

    @field_validator("jid")
    @classmethod
    def _bare_jid(cls, value: str | None) -> str | None:
        if value is None:
            return value
        local, at, domain = value.partition("@")
        if not at or not local or not domain or "/" in local or " " in value:
            raise ValueError("must be a JID like relay@example.org")
        return value

    @field_validator("component")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(c in value for c in "@/ ") or value.startswith(".") or value.endswith("."):
            raise ValueError("must be a domain like bridge.example.org")
        return value.lower()

    @field_validator("media_allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_origins(value)

    @field_validator("upload_service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if any(c in value for c in "/ ") or value.startswith(".") or value.endswith("."):
            raise ValueError("must be a JID like upload.example.org")
        return value.lower()

    @model_validator(mode="after")
    def _mode_keys(self) -> Self:
        """Each mode's required keys, and no key of the other mode: a `secret` left in a
        client section would otherwise be silently ignored. Errors name the key itself."""
        errors: list[InitErrorDetails] = []

        def problem(key: str, kind: str, message: str) -> None:
            errors.append(
                InitErrorDetails(type=PydanticCustomError(kind, message), loc=(key,), input=None)
            )

        component = self.mode == "component"
        required = ("component", "secret", "host") if component else ("jid", "password")
        for key in required:
            if getattr(self, key) is None:
                problem(key, "required_in_mode", f"is required in {self.mode} mode")
        for key in _CLIENT_ONLY if component else _COMPONENT_ONLY:
            if key in self.model_fields_set:
                other = "client" if component else "component"
                problem(key, "mode_key", f"applies to {other} mode only (mode: {self.mode})")
        if self.media == "link":
            for key in _UPLOAD_ONLY:
                if key in self.model_fields_set:
                    problem(key, "media_key", "applies to media: upload only (media: link)")
        server = self.host or (self.jid or "").partition("@")[2]
        if (
            not component
            and self.tls == "plain"
            and not self.allow_cleartext
            and not is_loopback_host(server)
        ):
            problem(
                "tls",
                "cleartext",
                f"plain sends the password to {server} unencrypted: use starttls or direct, "
                "or set allow_cleartext: true if the path is private",
            )
        if errors:
            # Raised as a ValidationError so each issue keeps its own location.
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @property
    def server_port(self) -> int | None:
        """The port to connect to: the configured one, else the mode's default (a client
        without a port uses SRV records)."""
        if self.port is not None:
            return self.port
        return COMPONENT_PORT if self.mode == "component" else None
