"""mIRC formatting codes ⇄ the core's neutral rich text (an HTML subset).

Bold, italic, underline, strikethrough and monospace map both ways; colours (`\\x03`,
`\\x04`) and reverse video have no neutral form and are stripped on the way in, never
produced on the way out. Every text run is passed through `clean_text`, so no control
character other than the codes produced here reaches a wire line, and the HTML built
here is escaped (then held to the allow-list by the caller through `richtext.clean`).
Pure functions, no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser

from imbridge.events import RichText
from imbridge.sanitize import clean_text

BOLD = "\x02"
ITALIC = "\x1d"
UNDERLINE = "\x1f"
STRIKE = "\x1e"
MONO = "\x11"
REVERSE = "\x16"
RESET = "\x0f"
COLOR = "\x03"
HEX_COLOR = "\x04"

TOGGLES = (BOLD, ITALIC, UNDERLINE, STRIKE, MONO)
"""The codes with a neutral form, in the order they are reopened."""
_TAG_OF = {BOLD: "b", ITALIC: "i", UNDERLINE: "u", STRIKE: "s", MONO: "code"}
_CODE_OF = {
    "b": BOLD,
    "strong": BOLD,
    "i": ITALIC,
    "em": ITALIC,
    "u": UNDERLINE,
    "s": STRIKE,
    "del": STRIKE,
    "code": MONO,
    "pre": MONO,
}
# One formatting token: a toggle, reset or reverse, or a colour with its optional
# arguments (`\x03` fg[,bg] with 1-2 digits each; `\x04` RRGGBB[,RRGGBB]).
_CODE = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    r"|[\x02\x1d\x1f\x1e\x11\x16\x0f]"
)


def tokens(text: str) -> Iterator[tuple[bool, str]]:
    """`(is_code, token)` pairs: each formatting code whole, other text as one run."""
    pos = 0
    for m in _CODE.finditer(text):
        if m.start() > pos:
            yield False, text[pos : m.start()]
        yield True, m.group(0)
        pos = m.end()
    if pos < len(text):
        yield False, text[pos:]


def strip_codes(text: str) -> str:
    """Text without any formatting code (colour arguments included)."""
    return _CODE.sub("", text)


def apply(state: frozenset[str], code: str) -> frozenset[str]:
    """The active toggles after `code`."""
    if code == RESET:
        return frozenset()
    if code in _TAG_OF:
        return state ^ {code}
    return state


def reopen(state: frozenset[str]) -> str:
    """Codes that turn `state` on at the start of a fresh line (IRC resets per line)."""
    return "".join(c for c in TOGGLES if c in state)


def state_after(text: str, state: frozenset[str] = frozenset()) -> frozenset[str]:
    for is_code, tok in tokens(text):
        if is_code:
            state = apply(state, tok)
    return state


def irc_to_rich(text: str) -> tuple[str, RichText | None]:
    """Plain text (codes stripped, cleaned) and, if any text was formatted, its rich form.

    The rich form is escaped HTML with tags closed and reopened at each change, so it is
    always well-formed whatever order the codes came in.
    """
    plain: list[str] = []
    markup: list[str] = []
    state: frozenset[str] = frozenset()
    formatted = False
    for is_code, tok in tokens(text):
        if is_code:
            state = apply(state, tok)
            continue
        run = clean_text(tok)
        if not run:
            continue
        plain.append(run)
        tags = [_TAG_OF[c] for c in TOGGLES if c in state]
        formatted = formatted or bool(tags)
        opening = "".join(f"<{t}>" for t in tags)
        closing = "".join(f"</{t}>" for t in reversed(tags))
        body = html.escape(run, quote=False).replace("\n", "<br>")
        markup.append(f"{opening}{body}{closing}")
    return "".join(plain), (RichText("".join(markup)) if formatted else None)


class _ToIrc(HTMLParser):
    """Walks the allowed HTML subset (see `richtext`) and writes mIRC codes."""

    _BLOCK = frozenset({"p", "pre", "blockquote", "li", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.depth: dict[str, int] = {}
        self.href: list[str | None] = []
        self.link_text: list[list[str]] = []
        self.quote = 0
        self.at_line_start = True

    @property
    def state(self) -> frozenset[str]:
        return frozenset(c for c, n in self.depth.items() if n > 0)

    def _newline(self) -> None:
        if self.out and not self.at_line_start:
            self.out.append("\n")
            self.at_line_start = True

    def _write(self, text: str) -> None:
        for i, piece in enumerate(text.split("\n")):
            if i:
                self.out.append("\n")
                self.at_line_start = True
            if not piece:
                continue
            if self.at_line_start:
                # IRC clients reset formatting at each line: reopen what is active.
                self.out.append("> " * self.quote + reopen(self.state))
                self.at_line_start = False
            self.out.append(piece)
            if self.link_text:
                self.link_text[-1].append(piece)

    def _toggle(self, code: str, delta: int) -> None:
        before = self.depth.get(code, 0)
        after = max(0, before + delta)
        self.depth[code] = after
        if (before > 0) != (after > 0) and not self.at_line_start:
            self.out.append(code)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.out.append("\n")
            self.at_line_start = True
            return
        if tag in self._BLOCK:
            self._newline()
        if tag == "blockquote":
            self.quote += 1
        elif tag == "li":
            self._write("• ")
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append([])
        if tag in _CODE_OF:
            self._toggle(_CODE_OF[tag], +1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _CODE_OF:
            self._toggle(_CODE_OF[tag], -1)
        if tag == "a" and self.href:
            href, shown = self.href.pop(), "".join(self.link_text.pop())
            if href and href not in shown:
                self._write(f" ({href})")
        if tag == "blockquote":
            self.quote = max(0, self.quote - 1)
        if tag in self._BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        self._write(clean_text(data))


def rich_to_irc(markup: RichText | str) -> str:
    """IRC text with mIRC codes for the neutral rich text; links keep their URL visible,
    lists and quotes become lines. Holds no control character but the toggles above."""
    parser = _ToIrc()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.out).strip("\n")
    # Codes after the last text of a line only close what the line end closes anyway.
    return "\n".join(line.rstrip(_TOGGLE_CHARS) for line in text.split("\n"))


_TOGGLE_CHARS = "".join(TOGGLES)
