"""Which incoming events the relay must not relay, and why: pure, no I/O.

Three outcomes. The bridge's own echoes (its own identity on that network) are dropped:
they are on the record already, as the deliveries that produced them. Events from a
configured bot (`ignore_users`: a peer bridge, a notifier) are archived as seen with the
decision `ignored` and never relayed; a relay marker on such an event says it is another
bridge's copy. So is a message with nothing visible in it (`INVISIBLE`). Everything else
is relayed, relay marker or not: a marker is a field any sender can set, so trusting it
from anyone would let a person keep a message out of the record while the whole room
reads it. Loop safety between two bridges therefore rests on each listing the other in
`ignore_users`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from imbridge.events import Edit, Event, Message
from imbridge.sanitize import has_visible

OWN_ECHO: Final = "own-echo"
RELAY_MARKER: Final = "relay-marker"
INVISIBLE: Final = "invisible"
"""A message or edit with nothing to show (only zero-width or blank characters): it
would reach the other rooms as a bare sender prefix, so it is archived and not relayed."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event archived with the decision `ignored`: `rule` names why for the archive
    (`ignore_users:<glob>` or `relay-marker`), `reason` says it in words."""

    rule: str
    reason: str


def screen(event: Event, *, identity: str | None, ignore_users: Iterable[str]) -> Ignored | None:
    """None: relay it. `Ignored(OWN_ECHO, ...)`: the bridge's own echo, to drop. Any other
    `Ignored`: archive it as ignored, never relay it."""
    origin = event.origin
    sender = origin.sender.id
    if identity is not None and sender == identity:
        return Ignored(OWN_ECHO, "the bridge's own message")
    glob = next((g for g in ignore_users if fnmatchcase(sender, g)), None)
    if glob is None:
        return _invisible(event)
    if origin.relayed:
        return Ignored(RELAY_MARKER, f"a copy relayed by a bot listed in ignore_users ({glob})")
    return Ignored(f"ignore_users:{glob}", f"sender listed in ignore_users ({glob})")


def _invisible(event: Event) -> Ignored | None:
    if isinstance(event, Message) and event.attachments:
        return None
    if isinstance(event, Message | Edit) and not has_visible(event.text):
        return Ignored(INVISIBLE, "no visible character (only invisible or blank ones)")
    return None


__all__ = ["INVISIBLE", "OWN_ECHO", "RELAY_MARKER", "Ignored", "screen"]
