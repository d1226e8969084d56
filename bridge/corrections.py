"""What a correction line says on a network that cannot edit (IRC): only what changed.

A user fixing a typo on Matrix should not make IRC read the whole message again
(matrix-appservice-irc #1026, #1749): a change of a few words is shown as those words,
`"teh" -> "the"`, a larger one as the new text, and an edit that changes nothing visible
(whitespace, formatting only) as nothing at all. Words are compared with difflib, the
standard library's sequence matcher. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

SMALL_WORDS = 8
"""Changed words (removed and added together) up to which a change counts as small."""
SMALL_SPANS = 3
"""Separate places changed, up to which a change counts as small."""
QUOTE_CHARS = 80
"""Longest quoted run in a small change; a longer one is a large change."""


@dataclass(frozen=True, slots=True)
class Change:
    """One changed place: the words it read, and the words it reads now."""

    old: str
    new: str

    def shown(self) -> str:
        if not self.old:
            return f'+"{self.new}"'
        if not self.new:
            return f'-"{self.old}"'
        return f'"{self.old}" -> "{self.new}"'


def visible_words(text: str) -> list[str]:
    return text.split()


def changes(before: str, after: str) -> list[Change] | None:
    """The changed places from `before` to `after`, word by word; [] when nothing visible
    changed; None when the change is too large to be read as a few words."""
    old, new = visible_words(before), visible_words(after)
    if old == new:
        return []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    found: list[Change] = []
    changed = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        changed += (i2 - i1) + (j2 - j1)
        found.append(Change(" ".join(old[i1:i2]), " ".join(new[j1:j2])))
    small = (
        changed <= SMALL_WORDS
        and len(found) <= SMALL_SPANS
        and changed * 2 <= len(old) + len(new)
        and all(len(c.old) <= QUOTE_CHARS and len(c.new) <= QUOTE_CHARS for c in found)
    )
    return found if small else None


def describe(found: list[Change]) -> str:
    return ", ".join(c.shown() for c in found)


__all__ = ["Change", "changes", "describe", "visible_words"]
