"""Reactions relayed to Matrix: an `m.reaction` annotating the relayed copy, and its
redaction when the reaction is taken back (Matrix spec, "Reactions" and "Redactions").

The relay posts as one account, and Matrix lets an account annotate an event with a
given key once (a second try is refused as a duplicate annotation). So one annotation
stands for every remote person who reacted with that key: `Annotation` remembers its
event id and who it stands for, and the annotation is redacted only when the last of
them takes theirs back. It is kept in the adapter's state slot (`state_key`), so a
removal after a restart still finds the event to redact. Pure values, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from imbridge.events import Reaction, RemoteId

ANNOTATION = "m.annotation"
DUPLICATE = "M_DUPLICATE_ANNOTATION"
"""Synapse's error for a second annotation with the same key by the same account."""


def state_key(room_id: str, target: str, key: str) -> str:
    """State slot key of the relay's annotation with `key` on `target` in `room_id`."""
    return f"rx:{room_id}\n{target}\n{key}"


def reactor(event: Reaction) -> str:
    """Who a relayed reaction is from, across networks."""
    return f"{event.origin.network}\n{event.origin.sender.id}"


def annotation_content(target: RemoteId, key: str) -> dict[str, object]:
    return {"m.relates_to": {"rel_type": ANNOTATION, "event_id": target, "key": key}}


@dataclass(frozen=True, slots=True)
class Annotation:
    """The relay's annotation with one key on one event: its event id ("" before it is
    posted) and the remote people it stands for."""

    event_id: str = ""
    by: tuple[str, ...] = ()

    def dumps(self) -> str:
        return json.dumps({"event": self.event_id, "by": list(self.by)}, ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | None) -> Annotation:
        """The stored annotation; nothing (or anything unreadable) reads as none."""
        try:
            data = json.loads(raw or "{}")
            return cls(str(data.get("event", "")), tuple(str(b) for b in data.get("by", ())))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def adding(self, who: str) -> Annotation:
        return Annotation(self.event_id, self.by if who in self.by else (*self.by, who))

    def removing(self, who: str) -> Annotation:
        return Annotation(self.event_id, tuple(b for b in self.by if b != who))

    @property
    def posted(self) -> bool:
        return bool(self.event_id)

    @property
    def orphaned(self) -> bool:
        """Posted, and nobody's any more: time to redact it."""
        return self.posted and not self.by


__all__ = ["ANNOTATION", "DUPLICATE", "Annotation", "annotation_content", "reactor", "state_key"]
