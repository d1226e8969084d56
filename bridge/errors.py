"""The exception tree, so callers catch exactly the failures they can handle.

ImbridgeError
├── ConfigError            every problem of a config file, each with YAML path and line
├── StateError             the state database is unusable (locked, newer schema)
└── AdapterError           raised by adapters
    ├── RetryableSendError offline, timed out, throttled: the outbox tries again later
    └── PermanentSendError forbidden, too big, room gone: recorded, never retried
"""

from __future__ import annotations

from dataclasses import dataclass


class ImbridgeError(Exception):
    """Base of every failure imbridge raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


class ConfigError(ImbridgeError):
    """A config file that cannot be used; carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class StateError(ImbridgeError):
    """The state database cannot be opened or migrated."""


class AdapterError(ImbridgeError):
    """A failure inside a protocol adapter."""


class RetryableSendError(AdapterError):
    """The send may succeed later (offline, timeout, rate limited); the outbox retries.

    `retry_after` is the server's own hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSendError(AdapterError):
    """The send can never succeed (forbidden, too large, room gone); it is not retried."""
