"""XEP-0444 message reactions: each update carries a sender's whole set, the core wants
what changed.

A `<reactions id='…'>` element lists every reaction its sender now has on one message;
an empty one takes them all back. The archive records each reaction added and each one
taken back (`Reaction`, `removed`), so the adapter compares an update with the set that
sender had before on that message. Those sets must outlive a restart: otherwise the first
update after it could not tell which keys went away, and would archive every key still in
place as a new reaction. So `ReactionSets` holds them per conversation (a room, or a
private chat), serialised into the adapter's state slot, one value per conversation
written once the events an update produced are on disk. It is bounded: only non-empty
sets are kept (a sender without reactions on a message is the default) and at most
`LIMIT` per conversation, the least recently changed dropped first; an update on a
message whose set was dropped archives its keys again as added and cannot name what
was taken back. Pure values, no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from imbridge.events import EventId, Origin, Reaction, RemoteId
from imbridge.sanitize import clean_text

LIMIT = 2_000
"""Sets kept per conversation: live reactions of the most recent messages."""
MAX_KEYS = 32
"""Keys read from one update: a client has no reason to send more on one message."""
MAX_KEY_CHARS = 64
_BIDI = dict.fromkeys(
    map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def reaction_keys(raw: Iterable[str]) -> tuple[str, ...]:
    """The keys of an update, cleaned, without blanks or repeats, in the order sent.

    XEP-0444 asks for one emoji per `<reaction>`; other text is kept too (short), since
    the archive records what people did, not only what the XEP allows."""
    keys: dict[str, None] = {}
    for key in raw:
        # Not `clean_nick`: it drops the zero-width joiner that holds an emoji sequence
        # (👨‍👩‍👧) together. Direction controls go: a key is shown inline.
        cleaned = " ".join(clean_text(key).translate(_BIDI).split())[:MAX_KEY_CHARS]
        if cleaned:
            keys[cleaned] = None
        if len(keys) >= MAX_KEYS:
            break
    return tuple(keys)


def state_key(conversation: str) -> str:
    """State slot key of one conversation's reaction sets."""
    return f"rx:{conversation}"


class ReactionSets:
    """The current reaction keys of each (sender, message) in one conversation."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._sets: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    @staticmethod
    def _key(sender: str, target: str) -> str:
        return f"{sender}\n{target}"

    def get(self, sender: str, target: str) -> tuple[str, ...]:
        return self._sets.get(self._key(sender, target), ())

    def put(self, sender: str, target: str, keys: tuple[str, ...]) -> None:
        key = self._key(sender, target)
        self._sets.pop(key, None)
        if keys:
            self._sets[key] = keys
            while len(self._sets) > self._limit:
                self._sets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sets)

    def dumps(self) -> str:
        return json.dumps([[k, list(v)] for k, v in self._sets.items()], ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | None, limit: int = LIMIT) -> ReactionSets:
        """The stored sets; an unreadable value reads as none (what a first run has)."""
        sets = cls(limit)
        try:
            for key, keys in json.loads(raw or "[]"):
                if isinstance(key, str) and isinstance(keys, list):
                    sets._sets[key] = tuple(str(k) for k in keys)
        except (ValueError, TypeError):
            sets._sets.clear()
        while len(sets._sets) > limit:
            sets._sets.popitem(last=False)
        return sets


def changes(
    previous: tuple[str, ...], current: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(added, removed): keys new in `current` in its order, then keys gone from
    `previous` in its order. Deterministic, so a replayed update gives the same events."""
    added = tuple(k for k in current if k not in previous)
    removed = tuple(k for k in previous if k not in current)
    return added, removed


def to_reactions(
    origin: Origin,
    target: EventId,
    previous: tuple[str, ...],
    current: tuple[str, ...],
    *,
    ids: Iterator[EventId],
) -> list[Reaction]:
    """The core events for one update, each with the next id from `ids`. The first
    carries the stanza's own remote id, the others that id with `#n` appended: distinct
    ids, so the core's duplicate check (one event per remote id) keeps them all, and the
    same ones when an update is read again after a restart (from the room's archive), so
    it is not archived twice."""
    added, removed = changes(previous, current)
    base = origin.remote_id
    changed = [(k, False) for k in added] + [(k, True) for k in removed]
    return [
        Reaction(
            id=next(ids),
            origin=origin if n == 0 or base is None
            else dataclasses.replace(origin, remote_id=RemoteId(f"{base}#{n}")),
            target=target,
            key=key,
            removed=gone,
        )
        for n, (key, gone) in enumerate(changed)
    ]  # fmt: skip


def relay_state_key(room: str) -> str:
    """State slot key of the sets the relay itself holds in one room (`RelaySets`)."""
    return f"rxo:{room}"


class RelaySets:
    """The reactions the relay has shown in one room, per speaking occupant and message,
    with who each key stands for.

    XEP-0444 replaces a sender's whole set with every update, and the relay's occupant
    speaks for everyone on the other networks (client mode): its set on a message is the
    union of their keys, and a key leaves it only when the last of them takes it back.
    A component's puppets speak one person each, so there each set is one person's.
    Bounded like `ReactionSets`: the least recently changed message is forgotten first
    (a later update for it starts from an empty set). Pure values, no I/O."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._sets: OrderedDict[str, dict[str, list[str]]] = OrderedDict()

    @staticmethod
    def _key(speaker: str, target: str) -> str:
        return f"{speaker}\n{target}"

    def keys(self, speaker: str, target: str) -> tuple[str, ...]:
        """The set to send for (`speaker`, `target`): keys in the order first shown."""
        return tuple(self._sets.get(self._key(speaker, target), {}))

    def apply(self, speaker: str, target: str, who: str, key: str, *, removed: bool) -> None:
        """`who` added (or took back) `key`; a repeat changes nothing, so a retried send
        finds the same set."""
        slot = self._key(speaker, target)
        held = self._sets.pop(slot, {})
        reactors = held.get(key, [])
        if removed:
            reactors = [r for r in reactors if r != who]
        elif who not in reactors:
            reactors = [*reactors, who]
        if reactors:
            held[key] = reactors
        else:
            held.pop(key, None)
        if held:
            self._sets[slot] = held
            while len(self._sets) > self._limit:
                self._sets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._sets)

    def dumps(self) -> str:
        return json.dumps(list(self._sets.items()), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | None, limit: int = LIMIT) -> RelaySets:
        """The stored sets; an unreadable value reads as none (what a first run has)."""
        sets = cls(limit)
        try:
            for slot, held in json.loads(raw or "[]"):
                sets._sets[str(slot)] = {
                    str(k): [str(r) for r in v] for k, v in dict(held).items() if v
                }
        except (ValueError, TypeError):
            sets._sets.clear()
        while len(sets._sets) > limit:
            sets._sets.popitem(last=False)
        return sets
