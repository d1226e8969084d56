"""Per-room state of the relay's MUC presence, and the resume cursor it persists.

A room's cursor is the last stanza-id the bridge handled there, with its timestamp: after
a restart the adapter asks the room's MAM archive (XEP-0313) for everything after that id,
so nothing said meanwhile is missed and nothing is relayed twice. No I/O here.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from imbridge.mentions import Names

from .proto.mentions import occupant_names
from .proto.stanzas import WireMessage


@dataclass(frozen=True, slots=True)
class Cursor:
    stanza_id: str
    stamp: datetime

    def dumps(self) -> str:
        return json.dumps({"sid": self.stanza_id, "ts": self.stamp.isoformat()})

    @classmethod
    def loads(cls, raw: str | None) -> Cursor | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            stamp = datetime.fromisoformat(data["ts"])
            return cls(str(data["sid"]), stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC))
        except (ValueError, KeyError, TypeError):
            return None


def cursor_key(room: str) -> str:
    return f"room:{room}"


class Seen:
    """Stanza-ids recently handled in a room: archive results and live messages overlap
    while the bridge catches up, and each must pass once."""

    def __init__(self, size: int = 2_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, sid: object) -> bool:
        return sid in self._ids

    def add(self, sid: str) -> None:
        self._ids[sid] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)


@dataclass(slots=True)
class Turn:
    """One send's place in a room's write order. Sends that start together may take
    different times to get ready (a re-upload can take seconds), yet the room must get
    their stanzas in the order they started: each writes only after the one before it
    has written, or given up."""

    previous: asyncio.Future[None] | None
    mine: asyncio.Future[None]

    async def wait(self) -> None:
        if self.previous is not None and not self.previous.done():
            await asyncio.wait({self.previous})  # not cancelled with us: it is another's

    def done(self) -> None:
        """Lets the next send write: now if every earlier one has written or given up,
        else as soon as they have (one that gives up early must not let a later send
        overtake an earlier one still getting ready)."""
        previous = self.previous
        if previous is not None and not previous.done():
            previous.add_done_callback(lambda _: self.done())
        elif not self.mine.done():
            self.mine.set_result(None)


@dataclass(slots=True)
class Room:
    """What the adapter knows about one joined room."""

    jid: str
    wanted_nick: str
    password: str | None = None
    nick: str = ""
    joined: bool = False
    subject_seen: bool = False  # the first subject after a join is the current one
    catching_up: bool = False
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the room is not reading its archive: sends wait on it."""
    buffer: list[WireMessage] = field(default_factory=list)
    seen: Seen = field(default_factory=Seen)
    occupants: dict[str, str | None] = field(default_factory=dict)  # nick -> real JID
    """Changed only through `arrived`, `left` and `emptied`, which keep `names` current."""
    join_result: asyncio.Future[str | None] | None = None
    last_turn: asyncio.Future[None] | None = None
    _names: tuple[str, Names] | None = None  # (own nick, the others' index)

    def __post_init__(self) -> None:
        self.nick = self.nick or self.wanted_nick

    def set_catching_up(self, value: bool) -> None:
        self.catching_up = value
        if value:
            self.caught_up.clear()
        else:
            self.caught_up.set()

    def take_turn(self) -> Turn:
        """The next place in this room's write order; taken before a send first waits."""
        turn = Turn(self.last_turn, asyncio.get_running_loop().create_future())
        self.last_turn = turn.mine
        return turn

    def arrived(self, nick: str, real_jid: str | None) -> None:
        self.occupants[nick] = real_jid
        self._names = None

    def left(self, nick: str) -> str | None:
        """Takes `nick` out; returns its real JID, if the room showed it."""
        self._names = None
        return self.occupants.pop(nick, None)

    def emptied(self) -> None:
        self.occupants.clear()
        self._names = None

    def names(self) -> Names:
        """The other occupants, indexed for finding whom a relayed text names: built
        again only when someone arrives, leaves or changes nick, not for each message."""
        if self._names is None or self._names[0] != self.nick:
            others = (nick for nick in self.occupants if nick != self.nick)
            self._names = (self.nick, occupant_names(self.jid, others))
        return self._names[1]

    def sender_id(self, nick: str) -> str:
        """A stable id for an occupant: the real bare JID where the room shows it,
        else the occupant JID."""
        real = self.occupants.get(nick)
        return real.partition("/")[0].lower() if real else f"{self.jid}/{nick}"

    def nick_candidates(self) -> list[str]:
        """The configured nick, then fallbacks when it is taken (XEP-0045 §7.2.9)."""
        base = self.wanted_nick
        return [base, f"{base}_", f"{base}__", f"{base}2"]
