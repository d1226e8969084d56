"""Connection registration as a sans-I/O state machine: IRCv3 capability negotiation
(CAP LS 302, REQ, ACK/NAK), SASL PLAIN or EXTERNAL, server password, and nick fallback.

It takes server lines and returns the lines to answer with, so every branch (a taken
nick, a refused SASL login, a server without CAP) is tested with recorded lines and no
socket. `CAP LS` goes first, before NICK/USER, so a server that knows CAP holds
registration until `CAP END` (IRCv3 capability negotiation §CAP LS).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Protocol

from imbridge.adapters.irc.proto import wire

_NICK_ERRORS = frozenset({"431", "432", "433", "436", "437"})
_SASL_FAILURES = frozenset({"902", "904", "905", "906", "908"})
_FATAL = {"464": "server password refused", "465": "banned from this server"}


class Secret(Protocol):
    def get_secret_value(self) -> str: ...


class SaslSettings(Protocol):
    @property
    def mechanism(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> Secret | None: ...


class Settings(Protocol):
    """What registration reads of the `networks.<name>` section (`IrcConfig` has it all),
    named here so this module needs no config model and stays sans-I/O."""

    @property
    def nick(self) -> str: ...
    @property
    def alt_nicks(self) -> tuple[str, ...]: ...
    @property
    def password(self) -> Secret | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def realname(self) -> str: ...
    @property
    def sasl(self) -> SaslSettings | None: ...
    @property
    def capabilities(self) -> tuple[str, ...]: ...


class RegistrationFailed(Exception):
    """The server refused the relay for a reason retrying soon will not fix."""

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


def nick_candidates(config: Settings) -> Iterator[str]:
    """The configured nick, the alternatives, `nick_`, `nick__`, then random suffixes."""
    yield config.nick
    yield from config.alt_nicks
    yield (config.nick + "_")[:30]
    yield (config.nick + "__")[:30]
    while True:
        yield config.nick[:25] + str(secrets.randbelow(100_000)).zfill(5)


class Registration:
    """Feed it every line until `done`; `RegistrationFailed` ends the attempt."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self._nicks = nick_candidates(config)
        self.nick = next(self._nicks)
        self.offered: dict[str, str] = {}
        self.enabled: set[str] = set()
        self.done = False
        self._cap_open = True
        self._sasl_sent = False

    def start(self) -> list[str]:
        c = self.config
        lines = [wire.build("CAP", "LS", "302")]
        if c.password is not None:
            lines.append(wire.build("PASS", trailing=c.password.get_secret_value()))
        lines.append(wire.build("NICK", self.nick))
        user = c.username or c.nick
        lines.append(wire.build("USER", user, "0", "*", trailing=c.realname))
        return lines

    def on_line(self, line: wire.Line) -> list[str]:
        cmd = line.command
        if cmd in _SASL_FAILURES:
            raise RegistrationFailed(f"SASL login refused ({cmd}: {line.params[-1:]})")
        if cmd in _FATAL:
            raise RegistrationFailed(f"{_FATAL[cmd]} ({cmd})", throttled=cmd == "465")
        if cmd == "ERROR":
            reason = line.param(0)
            raise RegistrationFailed(
                f"server closed the link: {reason}", throttled=is_throttle(reason)
            )
        if cmd in _NICK_ERRORS:
            self.nick = next(self._nicks)
            return [wire.build("NICK", self.nick)]
        handler = {
            "CAP": self._cap,
            "AUTHENTICATE": self._authenticate,
            "903": self._sasl_done,
            "001": self._welcome,
            "421": self._unknown_command,
        }.get(cmd)
        return handler(line) if handler else []

    def _welcome(self, line: wire.Line) -> list[str]:
        self.done = True
        self.nick = line.param(0) or self.nick
        return []

    def _sasl_done(self, line: wire.Line) -> list[str]:  # RPL_SASLSUCCESS
        return self._end_cap()

    def _unknown_command(self, line: wire.Line) -> list[str]:
        if line.param(1).upper() != "CAP":
            return []
        # A server from before CAP: registration goes on without it.
        self._cap_open = False
        return self._require_no_sasl()

    def _cap(self, line: wire.Line) -> list[str]:
        sub = line.param(1).upper()
        if sub == "LS":
            more = line.param(2) == "*"
            for item in line.params[-1].split():
                name, _, value = item.partition("=")
                self.offered[name] = value
            return [] if more else self._request()
        if sub == "ACK":
            self.enabled.update(line.params[-1].split())
            if "sasl" in self.enabled and self.config.sasl and not self._sasl_sent:
                self._sasl_sent = True
                return [wire.build("AUTHENTICATE", self.config.sasl.mechanism)]
            return self._end_cap()
        if sub == "NAK":
            if self.config.sasl is not None:
                raise RegistrationFailed("server refused the SASL capability")
            return self._end_cap()
        return []

    def _request(self) -> list[str]:
        wanted = [c for c in self.config.capabilities if c in self.offered]
        if self.config.sasl is not None:
            mechs = self.offered.get("sasl")
            if mechs is None:
                raise RegistrationFailed("sasl is configured but the server does not offer it")
            if mechs and self.config.sasl.mechanism not in mechs.split(","):
                raise RegistrationFailed(
                    f"server offers SASL {mechs}, not {self.config.sasl.mechanism}"
                )
            wanted.append("sasl")
        if not wanted:
            return self._end_cap()
        return [wire.build("CAP", "REQ", trailing=" ".join(wanted))]

    def _authenticate(self, line: wire.Line) -> list[str]:
        sasl = self.config.sasl
        if sasl is None or line.param(0) != "+":
            return []
        if sasl.mechanism == "EXTERNAL":
            return [wire.build("AUTHENTICATE", "+")]
        if sasl.username is None or sasl.password is None:  # the config model forbids it
            raise RegistrationFailed("SASL PLAIN needs a username and a password")
        chunks = sasl_plain(sasl.username, sasl.password.get_secret_value())
        return [wire.build("AUTHENTICATE", chunk) for chunk in chunks]

    def _end_cap(self) -> list[str]:
        if not self._cap_open:
            return []
        self._cap_open = False
        return [wire.build("CAP", "END")]

    def _require_no_sasl(self) -> list[str]:
        if self.config.sasl is not None:
            raise RegistrationFailed("sasl is configured but the server does not know CAP")
        return []


def sasl_plain(username: str, password: str, authzid: str = "") -> list[str]:
    """`AUTHENTICATE` payloads for SASL PLAIN (RFC 4616), in 400-byte chunks as IRCv3
    SASL requires; a payload that fills the last chunk exactly is followed by `+`."""
    data = base64.b64encode(f"{authzid}\0{username}\0{password}".encode()).decode()
    chunks = [data[i : i + 400] for i in range(0, len(data), 400)] or ["+"]
    if len(chunks[-1]) == 400:
        chunks.append("+")
    return chunks


def is_throttle(reason: str) -> bool:
    """An ERROR that means "you reconnect too often" or a ban: wait long, not 1 s."""
    low = reason.lower()
    return any(
        w in low
        for w in (
            "throttl",
            "too fast",
            "reconnecting too",
            "banned",
            "k-lined",
            "z-lined",
            "g-lined",
        )
    )
