"""XHTML-IM (XEP-0071) ⇄ the neutral rich-text form.

Outgoing markup is rebuilt element by element from the already-cleaned neutral HTML, so
what goes on the wire is well-formed XHTML in the XEP-0071 profile whatever the source
network sent; incoming XHTML-IM is mapped back and passed through `richtext.clean`, so a
hostile client cannot smuggle script or styles across. Pure functions, no I/O.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from imbridge.events import RichText
from imbridge.richtext import clean

from .xmlsafe import xml_text

XHTML_IM_NS = "http://jabber.org/protocol/xhtml-im"
XHTML_NS = "http://www.w3.org/1999/xhtml"

# neutral tag -> (XHTML-IM tag, style) per the XEP-0071 §7 recommended profile
_TO_XHTML: dict[str, tuple[str, str | None]] = {
    "b": ("strong", None),
    "strong": ("strong", None),
    "i": ("em", None),
    "em": ("em", None),
    "u": ("span", "text-decoration: underline"),
    "s": ("span", "text-decoration: line-through"),
    "del": ("span", "text-decoration: line-through"),
    "code": ("code", None),
    "pre": ("pre", None),
    "blockquote": ("blockquote", None),
    "p": ("p", None),
    "br": ("br", None),
    "ul": ("ul", None),
    "ol": ("ol", None),
    "li": ("li", None),
    "a": ("a", None),
}
_VOID = frozenset({"br"})


class _Builder(HTMLParser):
    """Builds an XHTML `<body>` from neutral HTML; unknown tags keep only their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.body = ET.Element(f"{{{XHTML_NS}}}body")
        self.stack: list[tuple[str, ET.Element]] = [("", self.body)]

    def _append_text(self, text: str) -> None:
        text = xml_text(text)
        parent = self.stack[-1][1]
        if len(parent):
            last = parent[-1]
            last.tail = (last.tail or "") + text
        else:
            parent.text = (parent.text or "") + text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        mapped = _TO_XHTML.get(tag)
        if mapped is None:
            return
        name, style = mapped
        element = ET.SubElement(self.stack[-1][1], f"{{{XHTML_NS}}}{name}")
        if style:
            element.set("style", style)
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                element.set("href", xml_text(href))
        if tag not in _VOID:
            self.stack.append((tag, element))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._append_text(data)


def rich_to_xhtml(rich: RichText) -> ET.Element:
    """The `<html xmlns=XEP-0071>` payload for a message with neutral rich text."""
    builder = _Builder()
    builder.feed(clean(xml_text(rich)))  # nh3 cannot even read a lone surrogate
    builder.close()
    wrapper = ET.Element(f"{{{XHTML_IM_NS}}}html")
    wrapper.append(builder.body)
    return wrapper


_STYLE_TAG = (
    (re.compile(r"underline"), "u"),
    (re.compile(r"line-through"), "s"),
    (re.compile(r"font-weight\s*:\s*bold"), "b"),
    (re.compile(r"font-style\s*:\s*italic"), "i"),
)


def _to_neutral(element: ET.Element, out: list[str]) -> None:
    tag = element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""
    opened: list[str] = []
    if tag == "span":
        style = element.get("style", "")
        opened = [t for pattern, t in _STYLE_TAG if pattern.search(style)]
    elif tag == "a":
        href = element.get("href")
        out.append(f'<a href="{html.escape(href or "", quote=True)}">')
        opened = ["a"]
    elif tag == "img":
        alt = element.get("alt") or element.get("src") or ""
        out.append(html.escape(alt, quote=False))
    elif tag not in ("body", "html", ""):
        opened = [tag]
    for t in opened:
        if t != "a":
            out.append(f"<{t}>")
    if element.text:
        out.append(html.escape(element.text, quote=False))
    for child in element:
        _to_neutral(child, out)
        if child.tail:
            out.append(html.escape(child.tail, quote=False))
    for t in reversed(opened):
        if t != "br":
            out.append(f"</{t}>")


def xhtml_to_rich(payload: ET.Element) -> RichText | None:
    """Neutral rich text from an incoming `<html xmlns=XEP-0071>` element, or None when
    it holds no XHTML body."""
    body = payload.find(f"{{{XHTML_NS}}}body")
    if body is None:
        return None
    out: list[str] = []
    _to_neutral(body, out)
    rich = clean("".join(out))
    return rich or None
