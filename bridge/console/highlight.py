"""Search hits with the query's words marked, escaped before any markup is added.

The archive matches words case- and accent-insensitively (FTS5 `unicode61
remove_diacritics`), so the marks must too: the text is folded one character at a time,
keeping where each folded character came from, and the spans found in the folded text are
marked in the original.
"""

from __future__ import annotations

import unicodedata

from markupsafe import Markup, escape

from imbridge.archive.crypto import words


def _folded(text: str) -> tuple[str, list[int]]:
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        decomposed = unicodedata.normalize("NFKD", ch)
        for c in "".join(c for c in decomposed if not unicodedata.combining(c)).casefold():
            out.append(c)
            origin.append(i)
    return "".join(out), origin


def highlight(text: str, query: str) -> Markup:
    """`text` escaped, each occurrence of a query word wrapped in `<mark>`."""
    terms = {w for w in words(query) if w}
    if not terms or not text:
        return escape(text)
    folded, origin = _folded(text)
    spans: list[tuple[int, int]] = []
    for term in terms:
        start = folded.find(term)
        while start != -1:
            end = start + len(term)
            spans.append((origin[start], origin[end - 1] + 1))
            start = folded.find(term, end)
    spans.sort()
    out: list[str] = []
    at = 0
    for begin, end in spans:
        if begin < at:
            continue
        out.append(escape(text[at:begin]))
        out.append(Markup("<mark>%s</mark>") % text[begin:end])
        at = end
    out.append(escape(text[at:]))
    return Markup("").join(out)
