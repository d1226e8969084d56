"""Cleaning of text and nicks that come from another network, before any adapter builds
a wire line, stanza or event from them.

Invariants: the output of `clean_text` holds no C0/C1 control other than tab and newline,
no lone surrogate and no noncharacter; `clean_nick` additionally holds no line break, no
bidi control and no zero-width character. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata

_NEWLINES = re.compile(r"\r\n?|[\u0085\u2028\u2029]")
# C0 except \t \n, DEL, C1; noncharacters U+FDD0-FDEF and U+xFFFE/xFFFF of the BMP.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")
_ASTRAL = re.compile(r"[\U00010000-\U0010ffff]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# Bidi embeddings, overrides and isolates, marks, and zero-width characters: harmless in
# prose but used in nicks to impersonate ("evil\u202egnp.exe").
_INVISIBLE = re.compile(r"[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
NICK_MAX = 64
REPLACEMENT = "\ufffd"


def decode_wire(data: bytes) -> str:
    """Bytes from a protocol that does not guarantee UTF-8 (IRC): UTF-8 where valid,
    otherwise CP1252, as IRC clients commonly fall back. A line that is evidently UTF-8
    up to its first bad byte (as when a server cuts a long line inside a character and
    appends "[CUT]") keeps its text, with U+FFFD for the bad bytes, not CP1252 mojibake."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if not data[: e.start].isascii():
            return data.decode("utf-8", errors="replace")
        return data.decode("cp1252", errors="replace")


def clean_text(text: str) -> str:
    """Message text safe for any protocol: line breaks normalised to `\\n`, controls
    dropped, lone surrogates replaced."""
    if text.isascii() and text.isprintable():  # most text: nothing to do, found in one pass
        return text
    text = _SURROGATES.sub(REPLACEMENT, text)
    text = _NEWLINES.sub("\n", text)
    text = _CONTROLS.sub("", text)
    # Non-BMP noncharacters (U+1FFFE ...) are rare; look at each character only then.
    if _ASTRAL.search(text):
        text = "".join(c for c in text if not _is_nonchar(c))
    return text


def clean_nick(nick: str) -> str:
    """A display name safe to show inline: one line, no invisible or direction-changing
    characters, NFC-normalised, at most `NICK_MAX` characters, never empty."""
    if (
        nick.isascii()
        and nick.isprintable()
        and 0 < len(nick) <= NICK_MAX
        and " ".join(nick.split()) == nick
    ):
        return nick  # already all of the above
    text = clean_text(nick).replace("\n", " ").replace("\t", " ")
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFC", " ".join(text.split()))
    return text[:NICK_MAX] or "?"


_EMBED_OPEN = frozenset("\u202a\u202b\u202d\u202e")  # LRE RLE LRO RLO, closed by PDF
_ISOLATE_OPEN = frozenset("\u2066\u2067\u2068")  # LRI RLI FSI, closed by PDI


def close_bidi(text: str) -> str:
    """`text` with every bidi embedding, override or isolate it opens closed at its end,
    so that text placed after it (a reply after a quote) keeps its own direction."""
    embeds = isolates = 0
    for c in text:
        if c in _EMBED_OPEN:
            embeds += 1
        elif c == "\u202c":
            embeds = max(0, embeds - 1)
        elif c in _ISOLATE_OPEN:
            isolates += 1
        elif c == "\u2069":
            isolates = max(0, isolates - 1)
    return text + "\u202c" * embeds + "\u2069" * isolates


_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Letters and symbols that render as nothing (Hangul fillers, the blank braille
pattern): the usual ways to post an "empty" message where empty ones are refused."""


def has_visible(text: str) -> bool:
    """Whether `text` shows anything: a character that is not whitespace, a control, a
    format character (zero-width, bidi), a lone combining mark or a blank letter. A
    message without one would arrive elsewhere as a bare sender prefix."""
    for c in text:
        if c.isascii():
            if c.isprintable() and not c.isspace():
                return True
            continue
        if c in _BLANK_LETTERS:
            continue
        if unicodedata.category(c)[0] not in "CZM":
            return True
    return False


def truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` that encodes to at most `limit` UTF-8 bytes."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def _is_nonchar(c: str) -> bool:
    return (ord(c) & 0xFFFE) == 0xFFFE
