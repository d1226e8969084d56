"""The neutral formatted form every adapter converts to and from: a small HTML subset.

Anything that becomes `RichText` has passed `clean`, an nh3 allow-list: no script, no
event handler, no `javascript:` URL survives, whatever the source. Adapters map it to
their own markup (mIRC codes, XHTML-IM, Matrix HTML). Pure functions, no I/O.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping
from html.parser import HTMLParser

import nh3

from imbridge.events import RichText

ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "blockquote",
        "br",
        "code",
        "del",
        "em",
        "i",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "u",
        "ul",
    }
)
ALLOWED_ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = frozenset({"http", "https", "mailto", "xmpp", "matrix", "irc", "ircs"})
_BLOCK = frozenset({"p", "pre", "blockquote", "li", "ul", "ol"})


def clean(markup: str) -> RichText:
    """Reduces any HTML to the allowed subset; content of dropped tags is kept as text,
    except that of script and style, which is removed."""
    return RichText(
        nh3.clean(
            markup,
            tags=set(ALLOWED_TAGS),
            attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
            url_schemes=set(URL_SCHEMES),
            link_rel=None,
            strip_comments=True,
        )
    )


def allow_only(
    markup: str,
    *,
    tags: Collection[str],
    attributes: Mapping[str, Collection[str]],
    drop_content: Collection[str] | None = None,
) -> str:
    """`markup` held to a network's own allow-list (Matrix HTML is wider than the neutral
    subset), with the neutral form's URL schemes; `drop_content` tags go with their
    content (script and style when None). Plain markup, not `RichText`: it may hold tags
    the neutral form lacks. Here so an adapter's sans-I/O `proto` needs no HTML library."""
    return nh3.clean(
        markup,
        tags=set(tags),
        attributes={k: set(v) for k, v in attributes.items()},
        url_schemes=set(URL_SCHEMES),
        clean_content_tags=set(drop_content) if drop_content is not None else None,
        link_rel=None,
        strip_comments=True,
    )


def escape(text: str) -> RichText:
    """Plain text as rich text that shows exactly that text."""
    return RichText(html.escape(text, quote=False).replace("\n", "<br>"))


class _Plain(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(v for k, v in attrs if k == "href" and v)
        if tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("• ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def to_plain(markup: str) -> str:
    """The text a reader would see, with line breaks where blocks and `<br>` were."""
    return read(markup)[0]


def read(markup: str) -> tuple[str, list[str]]:
    """`to_plain` and the link targets, in one pass (policy reads both of big bodies)."""
    parser = _Plain()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts).strip("\n"), parser.hrefs
