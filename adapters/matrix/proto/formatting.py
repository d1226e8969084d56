"""Matrix HTML (`org.matrix.custom.html`) ⇄ the core's neutral rich text.

Invariant: nothing leaves this module that has not passed an nh3 allow-list (through
`imbridge.richtext`). Incoming
HTML is reduced to the neutral subset (`imbridge.richtext.clean`), with reply fallbacks
(`<mx-reply>`) removed together with their content, so a quoted original never crosses
the bridge unchecked; outgoing HTML is the neutral subset held once more to the tags and
attributes the Matrix spec allows (client-server API, "m.room.message msgtypes"). No
script, event handler or `javascript:` URL passes either way. Pure functions, no I/O.
"""

from __future__ import annotations

import re

from imbridge.events import RichText
from imbridge.richtext import allow_only, clean, to_plain

HTML_FORMAT = "org.matrix.custom.html"

# The spec's suggested allow-list, minus img (an mxc:// image in a relayed body would be
# fetched by every reader's client from wherever the sender chose).
MATRIX_TAGS = frozenset({
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol",
    "sup", "sub", "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br", "div",
    "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "details",
    "summary",
})  # fmt: skip
MATRIX_ATTRIBUTES = {
    "font": {"data-mx-bg-color", "data-mx-color", "color"},
    "span": {"data-mx-bg-color", "data-mx-color", "data-mx-spoiler"},
    "a": {"href"},
    "ol": {"start"},
    "code": {"class"},
}
_HEADING = re.compile(r"<(/?)h[1-6]\b[^>]*>", re.IGNORECASE)


def from_matrix(formatted_body: str) -> RichText:
    """The neutral form of an incoming `formatted_body`.

    Headings become bold paragraphs (the neutral subset has no headings); everything the
    subset lacks keeps its text but loses its markup; `<mx-reply>` goes with its content.
    Any input is accepted: html5ever, behind nh3, parses whatever a browser would.
    """
    without_reply = allow_only(
        formatted_body,
        tags=MATRIX_TAGS,
        attributes=MATRIX_ATTRIBUTES,
        drop_content={"mx-reply", "script", "style"},
    )
    headed = _HEADING.sub(lambda m: "</b></p>" if m.group(1) else "<p><b>", without_reply)
    return clean(headed)


def to_matrix(rich: RichText) -> str:
    """The `formatted_body` for a neutral rich text, re-checked against the Matrix list.

    `rich` should already be clean; cleaning again costs microseconds and means a bug
    elsewhere in the core can never put script into a Matrix room.
    """
    return allow_only(rich, tags=MATRIX_TAGS, attributes=MATRIX_ATTRIBUTES)


def plain_of(rich: RichText) -> str:
    """What a plain-text reader of `rich` sees."""
    return to_plain(rich)
