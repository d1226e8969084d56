"""Typed, frozen models of the config file; unknown keys are rejected everywhere.

Network sections are validated by each adapter's own `config_model` (see `load`), so
this module knows only the keys common to all networks.
"""

from __future__ import annotations

import importlib
import ipaddress
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imbridge.adapter import NetworkConfig

Direction = Literal["both", "in", "out"]
NICK_FIELDS = frozenset({"nick", "nick_noping", "network", "room", "gateway", "user"})


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    message_text: bool = False
    """Log message text at info; off by default so logs hold no conversation."""


class ClientLimitsConfig(Strict):
    """Per-client limits of one route group (see `imbridge.httplimits`)."""

    rate: float = Field(default=5.0, gt=0)
    """Requests per second a client may keep up after its burst."""
    burst: int = Field(default=30, ge=1)
    concurrent: int = Field(default=4, ge=1)
    """Requests from one client in progress at once (a download counts until it ends)."""


class HttpConfig(Strict):
    listen: str | None = None
    keepalive_seconds: float = Field(default=15.0, gt=0, le=600)
    """An idle connection, or one that never sends a request, is closed after this."""
    max_connections: int = Field(default=256, ge=4, le=65536)
    """Lowered at start to half the process's descriptor limit (`LimitNOFILE=`)."""
    max_connections_per_client: int = Field(default=32, ge=1)
    trusted_proxies: tuple[str, ...] = ()
    """Reverse proxies (addresses or networks) whose X-Forwarded-For names the client
    that per-client limits count; from any other peer the header is ignored."""
    media_limits: ClientLimitsConfig = ClientLimitsConfig()
    media_link_days: int = Field(default=30, ge=1, le=3650)
    """How long a relayed `/media/` link opens; after that it answers 410 Gone."""
    metrics_token: SecretStr | None = None
    public_url: str | None = None
    """The address by which chat users reach `listen` (often through a reverse proxy).
    Set, attachments from networks whose media needs credentials (Matrix authenticated
    media) are relayed as signed links to the bridge's own `/media/` route, and a message
    past an IRC network's `max_lines` as its first lines and a signed `/text/` link to its
    full text (kept as long as the archive keeps its records)."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9465")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://bridge.example.org/")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be a plain base URL: no query, fragment or credentials")
        # `listen` is declared first: here it is valid, or absent when refused already.
        if "listen" in info.data and info.data["listen"] is None:
            raise ValueError("needs bridge.http.listen: it is the address of that listener")
        return value if value.endswith("/") else value + "/"


class BridgeSection(Strict):
    state_dir: Path = Path("./state")
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    drain_seconds: float = Field(default=8.0, gt=0, le=60)
    """How long SIGTERM waits for in-flight sends before exiting."""
    instance: str | None = Field(default=None, min_length=1, max_length=100)
    """This instance's name among those sharing a PostgreSQL state (`imbridge status`,
    /metrics); default `<host>:<pid>`."""
    database: SecretStr | None = None
    """Where the state lives: unset, a SQLite file in `state_dir`; a `postgresql://` URL,
    a PostgreSQL database (docs/scale.md). Give it as `database_url_file` when the URL
    carries a password. `state_dir` still holds keys, head files and attachments."""

    @field_validator("database")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL (leave it unset for SQLite)")
        return value


class RoomRef(Strict):
    network: str = Field(min_length=1)
    room: str = Field(min_length=1)
    direction: Direction = "both"
    """`in`: only feeds the gateway; `out`: only receives from it."""


class Gateway(Strict):
    nick_format: str = "<{nick}@{network}> "
    rooms: tuple[RoomRef, ...] = Field(min_length=2)
    relay_membership: bool = False
    """Joins, leaves, nick changes and kicks reach the gateway's other rooms as notices,
    one line per room per `membership_window` (see `imbridge.membership`)."""
    membership_window: float = Field(default=15.0, gt=0, le=3600)
    """Seconds a room's membership changes collect before their one notice line."""

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


class Member(Strict):
    """Shell-style globs over where an event comes from or goes to. A destination is a
    room, so only `network` and `room` apply to it; `user` applies to senders."""

    network: str = Field(default="*", min_length=1)
    room: str = Field(default="*", min_length=1)
    user: str = Field(default="*", min_length=1)


class Match(Member):
    group: str | None = None
    """A name from `policy.groups`: the side must also belong to that group."""
    authenticated: bool | None = None
    """`true`: only senders whose network vouches for their account (an IRC nick without
    a services account is not); `false`: only those it does not."""
    direct: bool | None = None
    """`true`: only direct messages from one person to another across networks, whose
    destination is a person (`to.user` then matches the recipient); `false`: only what
    goes to rooms. Either side may say it; it means the same."""


class Pattern(Protocol):
    """The part of a compiled RE2 pattern that policy uses (google-re2 has no stubs)."""

    def search(self, text: str) -> Any: ...

    def sub(self, repl: Callable[[Any], str], text: str) -> str: ...


def compile_pattern(pattern: str) -> Pattern:
    """Compiles with RE2, a linear-time engine: no pattern can backtrack catastrophically
    and stall the daemon, which `re` with a timeout cannot promise (a C-level match cannot
    be interrupted). The price is no look-around and no backreferences."""
    re2 = importlib.import_module("re2")
    options = re2.Options()
    options.log_errors = False
    try:
        return cast(Pattern, re2.compile(pattern, options))
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"is not a valid RE2 regular expression ({detail}); RE2 has no look-around "
            "or backreferences"
        ) from None


def _compile(pattern: str) -> str:
    compile_pattern(pattern)
    return pattern


class AttachmentMatch(Strict):
    """Which attachments a rule catches: any one condition is enough. An attachment of
    unknown size counts as too big when `max_bytes` is set (fail closed)."""

    types: tuple[str, ...] = ()
    """MIME type globs, e.g. `application/x-msdownload`, `video/*`."""
    names: tuple[str, ...] = ()
    """File name globs, matched case-insensitively, e.g. `*.exe`."""
    max_bytes: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _something(self) -> AttachmentMatch:
        if not self.types and not self.names and self.max_bytes is None:
            raise ValueError("give at least one of types, names, max_bytes")
        return self


class Lexicon(Strict):
    """A named list of words and phrases a `flag` rule looks for, matched case- and
    accent-insensitively as whole words; given inline (`words`) or one per line in a file
    (`file`, read at load; `#` starts a comment), or both."""

    words: tuple[str, ...] = ()
    file: Path | None = None

    @model_validator(mode="after")
    def _read(self, info: ValidationInfo) -> Lexicon:
        if self.file is None:
            if not any(w.strip() for w in self.words):
                raise ValueError("give `words`, a `file`, or both")
            return self
        base = (info.context or {}).get("base")
        path = self.file if self.file.is_absolute() or base is None else Path(base) / self.file
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ValueError(f"file {self.file}: cannot read: {reason}") from None
        listed = (line.split("#", 1)[0].strip() for line in text.splitlines())
        words = (*self.words, *(w for w in listed if w))
        if not words:
            raise ValueError(f"file {self.file} lists no words")
        object.__setattr__(self, "words", words)  # frozen: set once, while validating
        return self


class Rule(Strict):
    name: str = Field(min_length=1)
    action: Literal["allow", "deny", "redact", "flag"]
    """`flag`: relayed as the other rules decide, and put in the review console's queue."""
    from_: Match = Field(default=Match(), alias="from")
    to: Match = Match()
    text: str | None = None
    """A regular expression searched in every text that would cross, the sender's display
    name included, each as sent and normalised (docs/policy.md)."""
    sender_name: str | None = None
    """A regular expression searched in the sender's display name alone."""
    attachments: AttachmentMatch | None = None
    lexicons: tuple[str, ...] = ()
    """Names from `policy.lexicons`: the rule matches when any of their words occurs."""
    flag: bool = False
    """Also put what this rule matches in the review queue, whatever its action."""
    notify_sender: bool = False

    @field_validator("text", "sender_name")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return None if value is None else _compile(value)

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if self.to.user != "*" and self.to.direct is not True:
            raise ValueError(
                "to.user cannot match: a destination is a room (add `direct: true` to "
                "`to` to match the recipient of a direct message)"
            )
        if None not in (self.to.direct, self.from_.direct) and self.to.direct != self.from_.direct:
            raise ValueError("from.direct and to.direct disagree: say it on one side")
        if self.to.authenticated is not None:
            raise ValueError("to.authenticated cannot match: a destination is a room")
        if self.action == "redact" and self.text is None and self.attachments is None:
            if self.sender_name is None:
                raise ValueError(
                    "a redact rule needs `text`, `sender_name` or `attachments`: what to remove"
                )
        return self


class Barrier(Strict):
    """An information barrier: nothing crosses between the two groups, either way. Checked
    before every rule, so no allow rule can open it."""

    name: str = Field(min_length=1)
    between: tuple[str, str]
    notify_sender: bool = False


class PolicyHook(Strict):
    """A decision the rules cannot express, asked of code the organisation already runs:
    an HTTP service (`url`, e.g. a DLP product) or a Python hook installed in the
    `imbridge.policy_hooks` entry-point group (`entry_point`). See docs/hooks.md."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str | None = None
    entry_point: str | None = None
    timeout_ms: int = Field(default=2000, ge=1, le=60_000)
    """The time budget of one call; past it, `on_error` decides."""
    on_error: Literal["deny", "allow"] = "deny"
    """What a timeout or failure means: deny (fail closed, the default) or allow."""
    headers_file: Path | None = None
    """`Name: value` lines sent with every request (e.g. an API key), read at load."""
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    """Requests in flight to this hook at most; more wait their turn."""
    notify_sender: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    """Passed to a Python hook's factory as keyword arguments."""
    batch: bool = True
    """HTTP hooks: events waiting for a turn go together in one request (schema version
    2); false sends one event per request (version 1), for services that only speak it."""
    max_batch: int = Field(default=64, ge=1, le=1000)
    """HTTP hooks: events in one batched request at most."""

    @model_validator(mode="after")
    def _one_kind(self) -> PolicyHook:
        if (self.url is None) == (self.entry_point is None):
            raise ValueError("give exactly one of url (an HTTP hook) or entry_point (Python)")
        if self.entry_point is not None and {"batch", "max_batch"} & self.model_fields_set:
            raise ValueError("batch and max_batch apply to HTTP hooks (url) only")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("url must be an http:// or https:// URL")
            if self.options:
                raise ValueError("options apply to Python hooks (entry_point) only")
        elif self.headers_file is not None:
            raise ValueError("headers_file applies to HTTP hooks (url) only")
        return self


class Policy(Strict):
    default: Literal["allow", "deny"] = "allow"
    lexicons: dict[str, Lexicon] = Field(default_factory=dict)
    groups: dict[str, tuple[Member, ...]] = Field(default_factory=dict)
    barriers: tuple[Barrier, ...] = ()
    rules: tuple[Rule, ...] = ()
    hooks: tuple[PolicyHook, ...] = ()
    """Asked after barriers and rules, for the destinations they did not deny."""
    relay_moderator_deletes: bool = False
    """Whether a deletion by someone other than a message's author (a Matrix moderator's
    redaction) removes the message's copies elsewhere too; by default it is archived
    only, since a moderator of one room has no say over the others (`authorship`)."""

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, value: tuple[PolicyHook, ...]) -> tuple[PolicyHook, ...]:
        names = [h.name for h in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"hook name {name!r} is used twice: names must be unique")
        return value

    @model_validator(mode="after")
    def _known_lexicons(self) -> Policy:
        for i, rule in enumerate(self.rules):
            for name in rule.lexicons:
                if name not in self.lexicons:
                    known = ", ".join(sorted(self.lexicons)) or "none defined"
                    raise ValueError(
                        f"rules[{i}] ({rule.name}): unknown lexicon {name!r} ({known})"
                    )
        return self


class LegalHold(Strict):
    """Records matching these globs survive retention purges until the hold is removed."""

    name: str = Field(min_length=1)
    network: str = "*"
    room: str = "*"
    user: str = "*"


class ArchiveAttachments(Strict):
    """Attachment bytes kept with the archive (see `imbridge.archive.capture`)."""

    enabled: bool = True
    max_bytes: int = Field(default=25 * 1024 * 1024, ge=1, le=2**31)
    """Larger files are recorded as `too_large`, never fetched whole."""
    allow_origins: tuple[str, ...] = ()
    """`scheme://host[:port]` fetched even on a non-public address (an internal file host)."""
    timeout_seconds: float = Field(default=120.0, gt=0)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest.rstrip("/"):
                raise ValueError(
                    f"{origin!r}: expected scheme://host[:port], e.g. https://files.corp"
                )
        return value


SINK_FIELDS: dict[str, frozenset[str]] = {
    "syslog": frozenset({"address", "tls_verify", "ca_file", "app_name", "facility"}),
    "http": frozenset({"url", "token", "auth_scheme", "format", "tls_verify", "ca_file"}),
    "file": frozenset({"path", "max_bytes", "keep"}),
}


class Sink(Strict):
    """Where every archive record is also streamed (see docs/hooks.md): a syslog server,
    an HTTP event collector, or a rotated JSON-lines file for a log shipper."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Literal["syslog", "http", "file"]
    batch: int = Field(default=500, ge=1, le=10_000)
    """Records per write; after an outage at most this many arrive twice."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    address: str | None = None
    """syslog: `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:///dev/log`."""
    tls_verify: bool = True
    ca_file: Path | None = None
    app_name: str = Field(default="imbridge", min_length=1, max_length=48)
    facility: int = Field(default=13, ge=0, le=23)
    """13 is "log audit" (RFC 5424 section 6.2.1)."""
    url: str | None = None
    token: SecretStr | None = None
    auth_scheme: str = Field(default="Bearer", min_length=1)
    """`Authorization: <auth_scheme> <token>`: `Splunk` for Splunk's HEC, `ApiKey` for
    Elasticsearch."""
    format: Literal["lines", "hec", "bulk"] = "lines"
    path: Path | None = None
    max_bytes: int = Field(default=100 * 1024 * 1024, ge=4096)
    keep: int = Field(default=5, ge=1, le=1000)

    @model_validator(mode="after")
    def _fits_type(self) -> Sink:
        required = {"syslog": "address", "http": "url", "file": "path"}[self.type]
        if getattr(self, required) is None:
            raise ValueError(f"a {self.type} sink needs `{required}`")
        given = self.model_fields_set - {"name", "type", "batch", "timeout_seconds"}
        stray = sorted(given - SINK_FIELDS[self.type])
        if stray:
            raise ValueError(f"{', '.join(stray)}: not a key of a {self.type} sink")
        if self.address is not None:
            scheme, sep, rest = self.address.partition("://")
            if scheme not in ("tcp", "tls", "unix") or not sep or not rest:
                raise ValueError("address must be tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH")
            if scheme != "unix":
                host, colon, port = rest.rpartition(":")
                if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"address {self.address!r}: expected {scheme}://HOST:PORT")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("url must be an http:// or https:// URL")
        return self


class Archive(Strict):
    enabled: bool = True
    retention_days: int = Field(default=2557, ge=1)
    notice: str | None = None
    """Posted once in each bridged room (again when the text changes)."""
    legal_hold: tuple[LegalHold, ...] = ()
    encryption_key: SecretStr | None = None
    """Encrypts message text at rest (AES-256-GCM); give it as `encryption_key_file`:
    one key a line, the first seals what is written, the others (retired) still open."""
    head_file: Path | None = None
    """Append-only file of chain heads; default `<state_dir>/archive-heads.jsonl`."""
    checkpoint_seconds: float = Field(default=300.0, gt=0)
    log_checkpoints: bool = True
    signing_key: SecretStr | None = None
    """Ed25519 key signing the chain heads; give it as `signing_key_file` (e.g. a systemd
    credential). Default: `<state_dir>/archive-signing.key`, created on first use."""
    attachments: ArchiveAttachments = ArchiveAttachments()
    sinks: tuple[Sink, ...] = ()
    """Streams of every record to a SIEM or log store, each with its own cursor."""

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, value: tuple[Sink, ...]) -> tuple[Sink, ...]:
        names = [s.name for s in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sink name {name!r} is used twice: names must be unique")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from imbridge.archive.keyring import key_lines  # noqa: PLC0415 - cycle

            key_lines(value.get_secret_value())  # one key a line, the current first
        return value

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from imbridge.archive.heads import parse_private  # noqa: PLC0415 - cycle

            parse_private(value.get_secret_value().encode(), "the key")
        return value


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})


class ConsoleConfig(Strict):
    """The review console (`imbridge.console`): under `/console/` on `bridge.http.listen`
    when `enabled`, or served by `imbridge console` on `listen`."""

    enabled: bool = False
    listen: str = "127.0.0.1:9466"
    """Where `imbridge console` (the console as its own process) listens."""
    public_url: str | None = None
    """The https:// address people open (a reverse proxy terminating TLS): required
    before the console listens on anything but loopback."""
    allow_insecure_http: bool = False
    """Serve on a non-loopback address without https: passwords and sessions then cross
    the network in clear. For a closed lab only."""
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    login_attempts: int = Field(default=5, ge=1, le=100)
    """Failed logins in a row before the account is locked for `lockout_minutes`."""
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    limits: ClientLimitsConfig = ClientLimitsConfig(rate=20.0, burst=120, concurrent=8)
    """Per-client request limits on `/console/` (a reviewer's browser stays far below them;
    a script hammering the search does not)."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9466")
        return value

    @field_validator("public_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be a URL, e.g. https://review.example.org/")
        return value if value.endswith("/") else value + "/"


class RawConfig(Strict):
    """The file as validated before each network is handed to its adapter's model."""

    bridge: BridgeSection = BridgeSection()
    networks: dict[str, dict[str, Any]] = Field(min_length=1)
    gateways: dict[str, Gateway] = Field(default_factory=dict)
    policy: Policy = Policy()
    archive: Archive = Archive()
    console: ConsoleConfig = ConsoleConfig()

    @field_validator("networks")
    @classmethod
    def _plain_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in value:
            if name.startswith("@"):
                raise ValueError(f"network name {name!r}: names starting with @ are reserved")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole, valid configuration: what the daemon and the commands run on."""

    bridge: BridgeSection
    networks: Mapping[str, NetworkConfig]
    gateways: Mapping[str, Gateway]
    policy: Policy
    archive: Archive
    source: Path | None = None
    console: ConsoleConfig = ConsoleConfig()  # noqa: RUF009 - frozen: one shared default is safe
