"""The texts policy checks for one event, extracted once and normalised once: pure, no I/O.

Rules are regular expressions written by people for people, and a sender who wants past
`(?i)\\bconfidential\\b` writes it with a zero-width space or soft hyphen inside, in
fullwidth letters, with a Cyrillic `o`, or as `_confidential_`, which a reader still
reads as the word. So every piece is checked twice: as sent, and as a normalised copy
that reads as a person would read it, where

* NFKD/NFKC fold compatibility forms (fullwidth letters, ligatures, superscripts);
* default-ignorable and format characters (zero-width space and joiners, soft hyphen,
  word joiner, bidi controls, variation selectors, tags) are removed;
* combining marks are removed (`cönfidéntial`);
* Cyrillic, Greek and other letters that look like Latin ones are replaced by them (the
  Latin part of Unicode's confusables skeleton, UTS #39: the digits it also maps are kept,
  so a rule about numbers still reads numbers);
* case is folded, and `_` (like all connector punctuation) becomes a space, so `\\b` sees
  a word boundary there as a reader does.

The original is what gets relayed; the normalised copy only decides. Words split across
two messages are out of reach of a stateless gateway (docs/policy.md).

The formatted body is parsed once per event, however many rules and destinations there
are, and only up to `MAX_RICH_CHARS`: a larger formatted body is not parsed at all, and
the policy relays the event without its formatting (the plain text, checked in full, is
what crosses), so no unchecked markup can pass and no single message can stall the loop.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from imbridge.config.schema import Pattern
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    Join,
    Kick,
    Leave,
    Message,
    NickChange,
    Presence,
    Reaction,
    RichText,
    Topic,
)
from imbridge.richtext import read

MAX_RICH_CHARS = 65_536
"""Formatted bodies past this many characters are not parsed: sent without formatting."""

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt) that are not category Cf; every
# Cf character is removed as well.
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Latin look-alikes from Unicode's confusables.txt (UTS #39), for the scripts used to evade
# filters: Cyrillic, Greek, Armenian, and Latin letters outside ASCII. Upper and lower case,
# since the skeleton is taken before case folding.
_LOOKALIKES = {
    # Cyrillic
    "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u0405": "S", "\u0406": "I", "\u0408": "J",
    "\u041a": "K", "\u041c": "M",
    "\u041d": "H", "\u041e": "O", "\u0420": "P", "\u0421": "C", "\u0422": "T", "\u0423": "Y",
    "\u0425": "X", "\u04ae": "Y",
    "\u051a": "Q", "\u051c": "W", "\u04c0": "l", "\u0500": "d",
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0443": "y",
    "\u0445": "x", "\u0455": "s",
    "\u0456": "i", "\u0458": "j", "\u04bb": "h", "\u0501": "d", "\u051b": "q", "\u051d": "w",
    "\u04cf": "l", "\u04af": "y",
    "\u043a": "k", "\u044c": "b", "\u0433": "r", "\u043f": "n", "\u043c": "m", "\u0442": "t",
    "\u0432": "b", "\u043d": "h",
    # Greek
    "\u0391": "A", "\u0392": "B", "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I",
    "\u039a": "K", "\u039c": "M",
    "\u039d": "N", "\u039f": "O", "\u03a1": "P", "\u03a4": "T", "\u03a5": "Y", "\u03a7": "X",
    "\u03f9": "C", "\u037f": "J",
    "\u03b1": "a", "\u03bf": "o", "\u03b9": "i", "\u03ba": "k", "\u03bd": "v", "\u03c1": "p",
    "\u03c5": "u", "\u03c7": "x",
    "\u03f2": "c", "\u03f3": "j", "\u03c4": "t", "\u03b3": "y", "\u03b5": "e", "\u03b7": "n",
    "\u03c9": "w",
    # Armenian
    "\u0585": "o", "\u057d": "u", "\u0570": "h", "\u0578": "n", "\u0581": "g", "\u0566": "q",
    "\u0555": "O", "\u054d": "U",
    # Latin letters outside ASCII that read as ASCII ones
    "\u0131": "i", "\u0237": "j", "\u0251": "a", "\u0261": "g", "\u0269": "i", "\u026a": "i",
    "\u029f": "l", "\u1d04": "c",
    "\u1d0f": "o", "\u1d20": "v", "\u1d21": "w", "\u1d22": "z", "\ua731": "s", "\u0142": "l",
    "\u019a": "l", "\u0275": "o",
    "\u00f8": "o", "\u0111": "d", "\u0127": "h", "\u0167": "t",
}  # fmt: skip
_TABLE = str.maketrans(_LOOKALIKES)


def _removed(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category in ("Cf", "Mn", "Me"):
        return True
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _IGNORABLE_RANGES)


def normalise(text: str) -> str:
    """The form rules also match against (see the module docstring)."""
    if text.isascii():
        return text.casefold().replace("_", " ")
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if ch < "\x80" or not _removed(ch))
    skeleton = kept.translate(_TABLE).casefold()
    if not skeleton.isascii():
        skeleton = "".join(" " if unicodedata.category(ch) == "Pc" else ch for ch in skeleton)
    return unicodedata.normalize("NFC", skeleton.replace("_", " "))


@dataclass(frozen=True, slots=True)
class PolicyTexts:
    """Every piece of text of one event that would cross, each with its normalised form.

    `pieces` are the texts as sent; `forms[i]` is `(pieces[i], normalise(pieces[i]))` with
    duplicates dropped, which is what rules search. `name` is the sender's display name,
    which rules check too (it is shown as the relayed prefix, the puppet nick and the
    quote's attribution) and which `sender_name` rules check alone. `rich_dropped` says
    the formatted body was too large to parse and goes without formatting."""

    pieces: tuple[str, ...]
    forms: tuple[tuple[str, ...], ...]
    name: tuple[str, ...]
    rich_dropped: bool = False
    _seen: dict[tuple[int, str], bool] = field(default_factory=dict, compare=False, repr=False)
    """Answers already computed for this event, by (pattern, question): a rule that
    applies to five destinations searches the text once, not five times. Keyed by the
    pattern's id, which is stable while the compiled policy that holds it is in use."""

    @property
    def normalised(self) -> tuple[str, ...]:
        """The normalised copy of each piece: what `policy test` shows."""
        return tuple(f[-1] for f in self.forms)

    def _ask(self, pattern: Pattern, question: str, answer: Callable[[], bool]) -> bool:
        key = (id(pattern), question)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = answer()
        return found

    def any_piece(self, pattern: Pattern) -> bool:
        """Some piece (or the display name), as sent or normalised, has a match."""
        search = pattern.search
        return self._ask(
            pattern, "any", lambda: any(search(t) for f in (*self.forms, self.name) for t in f)
        )

    def every_piece(self, pattern: Pattern) -> bool:
        """Every piece has a match in one of its forms (an allow rule vouches for all
        that crosses); there is at least one piece."""
        search = pattern.search
        return self._ask(
            pattern,
            "every",
            lambda: bool(self.forms) and all(any(search(t) for t in f) for f in self.forms),
        )

    def in_name(self, pattern: Pattern) -> bool:
        """The sender's display name, as sent or normalised, has a match."""
        return self._ask(pattern, "name", lambda: any(pattern.search(t) for t in self.name))


def _forms(text: str) -> tuple[str, ...]:
    n = normalise(text)
    return (text,) if n == text else (text, n)


def policy_texts(event: Event, quoted: str | None = None) -> PolicyTexts:
    """The texts of `event` (and of a reply's quoted original) that rules check."""
    texts: list[str] = []
    dropped = False
    match event:
        case Message() | Edit():
            texts.append(event.text)
            if event.rich is not None:
                if len(event.rich) > MAX_RICH_CHARS:
                    dropped = True
                else:
                    texts.extend(rich_texts(event.rich))
        case Topic():
            texts.append(event.text)
        case Leave() | Kick():
            texts.append(event.reason)
        case Presence():
            texts.append(event.status)
        case Reaction():
            texts.append(event.key)
        case Delete() | Join() | NickChange():
            pass
        case _:  # pragma: no cover - the union is closed
            raise AssertionError(event)
    for a in attachments_of(event):
        texts.extend((a.name, a.url))
    if quoted:
        texts.append(quoted)
    pieces = tuple(dict.fromkeys(t for t in texts if t))
    name = event.origin.sender.name
    return PolicyTexts(
        pieces=pieces,
        forms=tuple(_forms(t) for t in pieces),
        name=_forms(name) if name else (),
        rich_dropped=dropped,
    )


def attachments_of(event: Event) -> tuple[Attachment, ...]:
    return event.attachments if isinstance(event, Message) else ()


def rich_texts(rich: RichText) -> list[str]:
    """What a formatted body shows: its text and its link targets."""
    plain, hrefs = read(rich)
    return [plain, *hrefs]
