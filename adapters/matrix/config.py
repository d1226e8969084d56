"""Typed model of a `networks.<name>` section with `type: matrix`.

Validated before the adapter connects anywhere, so a typo fails `imbridge check`, not a
login at 3 a.m. Secrets are `SecretStr`: they never show in a repr or a log line.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from imbridge.adapter import NetworkConfig
from imbridge.safefetch import check_origins

GHOST_PREFIX = re.compile(r"[a-z0-9._=-]+")


class AppserviceConfig(BaseModel):
    """How the bridge registers with the homeserver as an application service."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: str | None = None
    """The registration's `id`; default `imbridge-<network>`."""
    url: str | None = None
    """Where the homeserver pushes transactions; default the bridge's own listener,
    `http://<bridge.http.listen>/networks/<network>`."""
    ghost_prefix: str = "_imb_"
    """Ghosts are `@<ghost_prefix><network>_<nick>:<server>`."""
    as_token: SecretStr | None = None
    """The bridge's token towards the homeserver; with neither this nor `as_token_file`,
    one is made once and kept in `state_dir` (0600)."""
    hs_token: SecretStr | None = None
    """The homeserver's token towards the bridge; same default as `as_token`."""

    @field_validator("ghost_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or not GHOST_PREFIX.fullmatch(value):
            raise ValueError("must be lower-case letters, digits and . _ = - only")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None


class MatrixConfig(NetworkConfig):
    type: Literal["matrix"]
    mode: Literal["client", "appservice"] = "client"
    """`client`: one relay account, each message prefixed with its sender. `appservice`:
    the bridge registers with the homeserver (`imbridge matrix registration`) and every
    remote sender speaks as a Matrix user of their own (a ghost); `user_id` is then the
    appservice's bot (its `sender_localpart`)."""
    appservice: AppserviceConfig = AppserviceConfig()
    homeserver: str
    """Client-server API base URL, e.g. https://matrix.example.org."""
    user_id: str
    """The relay's own account, `@relay:example.org`."""
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    """Used only when no access token is given; the token it yields is kept in the state
    database, so restarts reuse one device (and Synapse's transaction-id deduplication)."""
    device_name: str = "imbridge"
    media: Literal["link", "upload"] = "link"
    """Attachments from other networks: `link` posts their URL, `upload` downloads them
    (at most `media_max_bytes`) and re-uploads them to the homeserver."""
    media_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    media_allow_origins: tuple[str, ...] = ()
    """`scheme://host[:port]` origins `media: upload` may fetch from although they are not
    public addresses (an internal file host). Anything else on loopback, private or
    link-local addresses is never fetched: it is relayed as a link."""
    sync_timeout_ms: int = Field(default=30_000, ge=0, le=120_000)
    request_timeout: float = Field(default=20.0, gt=0)
    """Seconds any single request may take before a send counts as failed (retried)."""
    encrypted_room_notice: bool = True
    """Say in an encrypted room, once, that it is not bridged."""
    direct_messages: bool = True
    """Accept invites to direct chats with the relay account: what people write there is
    archived (never relayed) and each of them is told so, once. Off: such invites are
    left pending and nothing said there is seen."""

    @field_validator("homeserver")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("media_allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_origins(value)

    @field_validator("user_id")
    @classmethod
    def _mxid(cls, value: str) -> str:
        if not value.startswith("@") or ":" not in value:
            raise ValueError("must be a full Matrix user id, like @relay:example.org")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MatrixConfig:
        if self.mode == "appservice":
            if self.access_token is not None or self.password is not None:
                raise ValueError(
                    "mode appservice logs in with the appservice's as_token: "
                    "leave out access_token and password"
                )
            return self
        if (self.access_token is None) == (self.password is None):
            raise ValueError(
                "give exactly one of access_token (or access_token_file) "
                "and password (or password_file)"
            )
        return self
