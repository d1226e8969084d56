"""`Names.find` against the plain definition of a mention: a name (case-insensitively)
that starts where no word character comes right before it and ends where none follows
it, the longest name winning where two start together, each person once, scanning left
to right. The index finds candidates by word and symbol; this checks it misses none."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.mentions import MIN_NAME, Found, Names


def word(c: str) -> bool:
    return c.isalnum() or c == "_"


def by_definition(text: str, names: dict[str, str], start: int) -> list[Found]:
    ordered = sorted(
        ((n.lower(), u) for n, u in names.items() if len(n) >= MIN_NAME),
        key=lambda nu: -len(nu[0]),
    )
    found, seen, i = [], set(), start
    while i < len(text):
        if i > 0 and word(text[i - 1]) and word(text[i]):
            i += 1
            continue
        for name, user in ordered:
            stop = i + len(name)
            if text[i:stop].lower() == name and not (
                stop < len(text) and word(text[stop]) and word(text[stop - 1])
            ):
                # A name filed under its first word is only tried where that whole
                # word stands: "bo" is not found at the start of "bob".
                if word(name[0]) and not _whole_first_word(text, i, name):
                    continue
                if user not in seen:
                    seen.add(user)
                    found.append(Found(user, i, stop))
                i = stop
                break
        else:
            i += 1
    return found


def _whole_first_word(text: str, i: int, name: str) -> bool:
    j = i
    while j < len(text) and word(text[j]):
        j += 1
    k = 0
    while k < len(name) and word(name[k]):
        k += 1
    return text[i:j].lower() == name[:k]


ALPHABET = "abAB_1@[]- .:"
nicks = st.text(alphabet=ALPHABET, min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(nicks, st.sampled_from(["u1", "u2", "u3", "u4"]), max_size=5),
    st.text(alphabet=ALPHABET, max_size=40),
    st.integers(min_value=0, max_value=5),
)
def test_the_index_finds_what_the_definition_finds(
    names: dict[str, str], text: str, start: int
) -> None:
    start = min(start, len(text))
    assert Names(names).find(text, start) == by_definition(text, names, start)
