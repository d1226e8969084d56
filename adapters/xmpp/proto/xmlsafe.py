"""Strings made safe to put in an XML 1.0 stanza.

slixmpp escapes `<`, `&` and quotes but writes every other character as it is. A C0
control, a lone surrogate or U+FFFE/U+FFFF is not allowed anywhere in an XML 1.0 document
(XML 1.0 §2.2 `Char`), so one such character from another network would make the stream
invalid and the server would disconnect the relay. Everything that goes into a stanza, text
or attribute, passes `xml_text` first. Pure functions, no I/O.
"""

from __future__ import annotations

import re

from imbridge.sanitize import REPLACEMENT, clean_nick

# XML 1.0 §2.2: Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_NOT_XML_CHAR = re.compile(r"[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def xml_text(text: str) -> str:
    """`text` with every character XML 1.0 forbids removed; a lone surrogate (an
    undecodable byte smuggled through `surrogateescape`) becomes U+FFFD so the reader
    sees that something was there. Line breaks become `\n`: a raw CR would be turned
    into LF by the reader's parser anyway (XML 1.0 §2.11), so the text stays as read."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _NOT_XML_CHAR.search(text) is None:
        return text
    text = _SURROGATE.sub(REPLACEMENT, text)
    return _NOT_XML_CHAR.sub("", text)


def is_xml_text(text: str) -> bool:
    """Whether `text` may appear in an XML 1.0 document as it is."""
    return _NOT_XML_CHAR.search(text) is None


def xml_nick(nick: str) -> str:
    """A MUC nickname (the resource of an occupant JID) that is valid XML and shows what
    it is: no bidi override or zero-width character can make it pass for another."""
    return xml_text(clean_nick(nick))
