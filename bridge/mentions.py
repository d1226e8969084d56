"""Finding the people a relayed text names, and marking them in its formatted twin.

A mention crosses networks in two ways: explicitly, as a `Mention` the sender's client
marked (a Matrix pill), and implicitly, as a name in the text: an IRC user writes
"bob: lunch?" and means whoever is called bob on the other side. Only the destination
knows who is there (its room members), so each adapter asks `find` for the names of
its members in the sender's words, and `mark_rich` for the formatted body with its own
ping markup around them. Names are matched as whole words, case-insensitively, the way
IRC clients highlight. Pure functions, no I/O; the adapters own the markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from imbridge.events import Mention, RichText

MIN_NAME = 2
"""Shorter names are letters in ordinary words: never matched implicitly."""
_TAG = re.compile(r"(<[^>]*>)")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Found:
    """A name found in the text: `text[start:end]`, meaning `user`."""

    user: str
    start: int
    end: int


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"  # as the regex `\w`, a character at a time


def _key(text: str, i: int) -> str:
    """What names starting at `i` are filed under: their first word, or their first
    character when that is no word character ("[dave]", "@bob")."""
    word = _WORD.match(text, i)
    return word.group(0) if word else text[i : i + 1]


class Names:
    """Names to find (name -> user), indexed once: a destination keeps one per room and
    builds it again only when the room's members change."""

    __slots__ = ("_index", "_symbols", "users")

    def __init__(self, names: Mapping[str, str]) -> None:
        index: dict[str, list[tuple[str, str]]] = {}
        for name, user in names.items():
            if len(name) >= MIN_NAME:
                low = name.lower()
                index.setdefault(_key(low, 0), []).append((low, user))
        for group in index.values():
            group.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._index = index  # by first word (lower case), longest name first
        self._symbols = [key for key in index if not _is_word(key[0])]  # "[dave]", "@bob"
        self.users = frozenset(names.values())

    def find(self, text: str, start: int = 0) -> list[Found]:
        """Where any name stands as a word in `text[start:]`; the longest name wins
        where two start together, and each user is found once (at their first place).
        Looks names up by where words start rather than trying each name everywhere, so
        a room of thousands costs what a room of ten does."""
        found: list[Found] = []
        seen: set[str] = set()
        stop = start
        for i in self._starts(text, start):
            if i < stop:
                continue  # inside the name found before
            hit = self._at(text, i)
            if hit is None:
                continue
            user, stop = hit
            if user not in seen:
                seen.add(user)
                found.append(Found(user, i, stop))
        return found

    def _starts(self, text: str, start: int) -> list[int]:
        """Where a name may start, in order: each word whose lower case some name
        begins with (a word's first character, never one inside a word), and each place
        of a non-word character some name begins with. Found by the regex engine, so
        the words of a message cost a dictionary lookup each, not a Python step per
        character."""
        index = self._index
        starts = [
            m.start()
            for m in _WORD.finditer(text, start)
            if m.group(0).lower() in index and not (m.start() > 0 and _is_word(text[m.start() - 1]))
        ]
        for symbol in self._symbols:
            at = text.find(symbol, start)
            while at != -1:
                starts.append(at)
                at = text.find(symbol, at + 1)
        if self._symbols:
            starts.sort()
        return starts

    def _at(self, text: str, i: int) -> tuple[str, int] | None:
        end = len(text)
        for name, user in self._index.get(_key(text, i).lower(), ()):
            stop = i + len(name)
            if text[i:stop].lower() == name and not (
                stop < end and _is_word(text[stop]) and _is_word(text[stop - 1])
            ):
                return user, stop
        return None


def find(text: str, names: Mapping[str, str], start: int = 0) -> list[Found]:
    """`Names(names).find(text, start)`, for a set of names used once."""
    return Names(names).find(text, start)


def explicit(mentions: Iterable[Mention], start: int) -> list[Found]:
    """The sender's own marked mentions, as `find` gives names (from `start` on)."""
    return [Found(m.user, m.start, m.end) for m in mentions if m.start >= start]


def merge(first: list[Found], then: list[Found]) -> list[Found]:
    """`first`, plus those of `then` that overlap none of them and name someone new;
    in text order."""
    users = {f.user for f in first}
    kept = list(first)
    for f in then:
        if f.user in users or any(f.start < k.end and k.start < f.end for k in kept):
            continue
        users.add(f.user)
        kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def mark_rich(
    rich: RichText, lead: str, names: list[tuple[str, str]], markup: Callable[[str, str], str]
) -> RichText:
    """`rich` with the first whole-word occurrence of each shown name, after the escaped
    `lead` (the sender prefix, which must not ping) and outside any link, replaced by
    `markup(shown, user)`. `names` is (shown, user) in text order."""
    head = html.escape(lead, quote=False)
    body = rich[len(head) :] if lead and rich.startswith(head) else rich
    head = rich[: len(rich) - len(body)]
    parts = _TAG.split(body)
    in_link = 0
    pending = list(names)
    for i, part in enumerate(parts):
        if i % 2:  # a tag
            low = part.lower()
            if low.startswith("<a ") or low == "<a>":
                in_link += 1
            elif low.startswith("</a"):
                in_link = max(0, in_link - 1)
            continue
        if in_link or not pending:
            continue
        parts[i] = _mark_text(part, pending, markup)
    return RichText(head + "".join(parts))


def _mark_text(part: str, pending: list[tuple[str, str]], markup: Callable[[str, str], str]) -> str:
    """Marks names of `pending` in one text node, in order, each after the last, so no
    search looks inside markup it put there; marked names leave `pending`."""
    done, rest = "", part
    while pending:
        shown, user = pending[0]
        escaped = html.escape(shown, quote=False)
        match = re.search(rf"(?<!\w){re.escape(escaped)}(?!\w)", rest, re.IGNORECASE)
        if match is None:
            break  # perhaps in a later text node
        done += rest[: match.start()] + markup(shown, user)
        rest = rest[match.end() :]
        pending.pop(0)
    return done + rest
