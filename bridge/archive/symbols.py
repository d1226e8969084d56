"""Emoji and other symbols made searchable by their Unicode names.

FTS5's unicode61 tokenizer, like `crypto.words`, sees only letters and digits: an emoji
is a separator to it, so a reaction archived as "👍" could never be found, and a search
for "👍" would have no words at all (and list everything). Both the indexed terms and the
query therefore spell each symbol (Unicode category So) as its name: "👍" becomes
"thumbs up sign" on both sides, so searching for the emoji, or for "thumbs up", finds it.
Pure; applies to the index terms and the query only, never to stored bodies.
"""

from __future__ import annotations

import re
import unicodedata

_CANDIDATE = re.compile(r"[^\w\s\x00-\x7f]")


def _spell(match: re.Match[str]) -> str:
    ch = match.group()
    if unicodedata.category(ch) != "So":
        return ch
    name = unicodedata.name(ch, "")
    return f" {name.lower()} " if name else ch


def spell_symbols(text: str) -> str:
    """`text` with each symbol replaced by its lower-case Unicode name, spaced apart."""
    return _CANDIDATE.sub(_spell, text)


__all__ = ["spell_symbols"]
