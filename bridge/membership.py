"""Who came and went, as one notice line per room per window: the debounce of
`relay_membership`. Pure: the caller passes the clock, and does the I/O.

A netsplit or a reconnect storm is dozens of quits and joins within seconds; relayed one
by one they would bury the conversation on every other network. So changes collect per
(source room, destination room) for `window` seconds from the first one, and then become
one line, e.g. `* alice, bob and 12 others joined #room on corp-irc`. Within a window
each person counts once, by their net change: someone who left and came back under the
same name (a reconnect, a netsplit and its heal) changed nothing and is not mentioned;
a chain of nick changes is one rename from the first name to the last.

What is collected lives in memory only: every event is archived as it arrives (the
archive is the record), and a stop flushes the open windows into the outbox, so only a
crash loses the lines of the windows then open; never more than one window's worth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from imbridge.events import Event, Join, Kick, Leave, NickChange
from imbridge.policy import Destination
from imbridge.sanitize import clean_nick

NAMES_SHOWN: Final = 2
"""Past three names, a list shows two and "N others": a line stays short on IRC."""


@dataclass(frozen=True, slots=True)
class Window:
    """Where one line goes and what it is about."""

    network: str
    room: str
    dest: Destination


@dataclass(slots=True)
class _Person:
    before: str  # their name when the window first saw them
    present_before: bool  # the first change was them leaving (or renaming): they were in
    after: str = ""
    present_after: bool = False
    kicked_by: str | None = None
    reason: str = ""


@dataclass(slots=True)
class _Open:
    closes: float
    people: dict[str, _Person] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    """A renamed person's new id → the key they were first seen under."""


class Debouncer:
    """The open windows; `add` as events arrive, `due` when the clock says so."""

    def __init__(self) -> None:
        self._open: dict[Window, _Open] = {}

    def add(self, event: Event, dest: Destination, now: float, *, window: float) -> None:
        """Counts a membership change toward `dest`, in the window open there or in one
        opening now for `window` seconds; other events are ignored."""
        if not isinstance(event, Join | Leave | NickChange | Kick):
            return
        key = Window(event.origin.network, event.origin.room, dest)
        state = self._open.get(key)
        if state is None:
            state = self._open[key] = _Open(closes=now + window)
        _count(state, event)

    def __len__(self) -> int:
        return len(self._open)

    def next_close(self) -> float | None:
        """When the earliest open window closes; None when none is open."""
        return min((w.closes for w in self._open.values()), default=None)

    def due(self, now: float) -> list[tuple[Window, str]]:
        """The lines of the windows closed by `now` (those that net out give none)."""
        closed = [key for key, w in self._open.items() if w.closes <= now]
        return [
            (key, line)
            for key in closed
            if (line := summary(self._open.pop(key).people.values(), key)) is not None
        ]

    def flush(self) -> list[tuple[Window, str]]:
        """Every open window's line now (at stop: queued rather than lost)."""
        return self.due(float("inf"))


def _count(state: _Open, event: Join | Leave | NickChange | Kick) -> None:
    sender = event.origin.sender
    key = state.aliases.get(sender.id, sender.id)
    name = clean_nick(sender.name or sender.id)
    person = state.people.get(key)
    if person is None:
        person = state.people[key] = _Person(
            before=name, present_before=not isinstance(event, Join)
        )
    match event:
        case Join():
            person.after, person.present_after, person.kicked_by = name, True, None
        case Leave():
            person.after, person.present_after, person.kicked_by = name, False, None
            person.reason = event.reason
        case Kick():
            person.after, person.present_after = name, False
            person.kicked_by, person.reason = clean_nick(event.by) if event.by else "", event.reason
        case NickChange():
            new = clean_nick(event.new_name)
            person.after, person.present_after = new, True
            # An IRC nick without an account is its own id: the new nick names them next.
            state.aliases[event.new_name] = key
            if sender.id == sender.name:
                state.aliases[new] = key


def names(people: list[str]) -> str:
    """`alice`, `alice and bob`, `alice, bob and carol`, `alice, bob and 12 others`."""
    if len(people) == 1:
        return people[0]
    if len(people) <= NAMES_SHOWN + 1:
        return f"{', '.join(people[:-1])} and {people[-1]}"
    return f"{', '.join(people[:NAMES_SHOWN])} and {len(people) - NAMES_SHOWN} others"


def summary(people: Iterable[_Person], where: Window) -> str | None:
    """The window's one line, or None when everyone is where they were."""
    joined: list[str] = []
    left: list[str] = []
    kicked: list[_Person] = []
    renamed: list[str] = []
    for p in people:
        if p.present_before and p.present_after:
            if p.before != p.after:
                renamed.append(f"{p.before} is now known as {p.after}")
        elif p.present_after:
            joined.append(p.after)
        elif not p.present_before:
            continue  # came and went within the window: the archive has it
        elif p.kicked_by is not None:
            kicked.append(p)
        else:
            left.append(p.before)
    place = f"{clean_nick(where.room)} on {clean_nick(where.network)}"
    if joined and not (left or kicked or renamed):
        return f"* {names(joined)} joined {place}"
    if left and not (joined or kicked or renamed):
        return f"* {names(left)} left {place}"
    clauses = [f"{names(joined)} joined"] if joined else []
    clauses += [f"{names(left)} left"] if left else []
    clauses += [_kicks(kicked)] if kicked else []
    clauses += (
        renamed[: NAMES_SHOWN + 1]
        if len(renamed) <= NAMES_SHOWN + 1
        else [f"{len(renamed)} people changed their names"]
    )
    if not clauses:
        return None
    return f"* {place}: {'; '.join(clauses)}"


def _kicks(kicked: list[_Person]) -> str:
    """`dave was kicked by op (spam)`; several: `dave and erin were kicked`."""
    if len(kicked) > 1:
        return f"{names([p.before for p in kicked])} were kicked"
    p = kicked[0]
    by = f" by {p.kicked_by}" if p.kicked_by else ""
    why = f" ({' '.join(p.reason.split())[:120]})" if p.reason.strip() else ""
    return f"{p.before} was kicked{by}{why}"


__all__ = ["Debouncer", "Window", "names", "summary"]
