"""The compliance archive: every event seen and every decision taken, hash-chained.

`Recorder` is what the relay path calls, inside the same transaction that queues the
deliveries, so the archive never misses an event that crossed and never holds one that
did not commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imbridge.db import Conn
from imbridge.events import Event, EventId, Message, RemoteId
from imbridge.policy import Decision, Destination


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one delivery: the remote id it got, or the permanent error."""

    event_id: EventId
    dest: Destination
    remote_id: RemoteId | None
    error: str | None = None


class Recorder(Protocol):
    def record_event(
        self,
        conn: Conn,
        event: Event,
        decisions: Sequence[tuple[Destination, Decision]],
    ) -> None:
        """An incoming event and the decision for each destination (runs inside the relay
        transaction)."""
        ...

    def record_delivery(
        self,
        conn: Conn,
        event_id: EventId,
        dest: Destination,
        *,
        remote_id: RemoteId | None,
        error: str | None,
    ) -> None:
        """The outcome of one delivery: the remote id it got, or the permanent error."""
        ...

    def record_deliveries(self, conn: Conn, done: Sequence[Delivery]) -> None:
        """Several outcomes at once: the outbox records deliveries in batches."""
        ...

    def record_ignored(self, conn: Conn, event: Event, *, rule: str, reason: str) -> None:
        """An event seen but never relayed (a configured bot, another bridge's copy):
        the event as seen and one decision `ignored` naming `rule` (runs inside the relay
        transaction)."""
        ...

    def record_notice(
        self,
        conn: Conn,
        notice: Message,
        *,
        purpose: str,
        about: EventId | None = None,
        rule: str | None = None,
    ) -> None:
        """A notice the bridge itself posts (`purpose`: "policy" to a sender, "room" for
        the archive notice), with its text, in the transaction that queues it; `about` is
        the event it answers, `rule` the rule or setting behind it."""
        ...


class NullRecorder:
    """Used when `archive.enabled` is false."""

    def record_event(
        self,
        conn: Conn,
        event: Event,
        decisions: Sequence[tuple[Destination, Decision]],
    ) -> None:
        return None

    def record_delivery(
        self,
        conn: Conn,
        event_id: EventId,
        dest: Destination,
        *,
        remote_id: RemoteId | None,
        error: str | None,
    ) -> None:
        return None

    def record_deliveries(self, conn: Conn, done: Sequence[Delivery]) -> None:
        return None

    def record_ignored(self, conn: Conn, event: Event, *, rule: str, reason: str) -> None:
        return None

    def record_notice(
        self,
        conn: Conn,
        notice: Message,
        *,
        purpose: str,
        about: EventId | None = None,
        rule: str | None = None,
    ) -> None:
        return None
