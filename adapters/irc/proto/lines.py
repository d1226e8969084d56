"""Text → IRC lines that fit the wire: each line cut to the bytes left once the server
has put the relay's prefix in front of it (RFC 1459 §2.3).

The invariant the hypothesis tests hold this module to: whatever the text, every line
built holds no CR, LF or NUL, fits 512 bytes with the prefix the server will add, and the
lines carry the cleaned text whole and in order (aside from formatting codes reopened at
each split, and blank runs that would fill a line on their own). Nothing is ever cut:
IRC users asked for years to read long messages in full (matterbridge #1766,
matrix-appservice-irc #488). A message too long for `max_lines` reaches IRC as its first
lines and a link to the full text, made by the core (`imbridge.textlinks`) before the
message is queued, or as every line, paced by flood control. No I/O here.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from imbridge.adapters.irc.proto import formatting, wire
from imbridge.sanitize import clean_text

ACTION_OVERHEAD = len("\x01ACTION \x01")
MIN_BUDGET = 64  # bytes of text per line below which no sane channel/nick leaves us


@dataclass(frozen=True, slots=True)
class Mask:
    """The relay's own `nick!user@host` as the server will prefix it; unknown parts are
    assumed as long as servers allow, so a line never ends up over 512 bytes."""

    nick: str
    user: str = ""
    host: str = ""

    def prefix_bytes(self) -> int:
        user = self.user or "u" * wire.UNKNOWN_USER_LEN
        host = self.host or "h" * wire.UNKNOWN_HOST_LEN
        return wire.prefix_bytes(self.nick, user, host)


def text_budget(mask: Mask, command: str, target: str, *, action: bool = False) -> int:
    """Bytes of text one `command target :text` line can carry once the server has put
    `:nick!user@host ` in front of it (RFC 1459 §2.3)."""
    fixed = mask.prefix_bytes() + len(f"{command} {target} :".encode())
    budget = wire.MAX_LINE - fixed - (ACTION_OVERHEAD if action else 0)
    return max(budget, MIN_BUDGET)


def split_line(line: str, budget: int) -> list[str]:
    """Cuts one line (no LF) into pieces of at most `budget` UTF-8 bytes: after a space
    when one is in the second half of the piece, never inside a character, a formatting
    code, or before a combining mark; each piece reopens the formatting active at its
    start. Pieces with no visible text are dropped."""
    if len(line.encode("utf-8")) <= budget:  # the common case: one piece, as it is
        return [line] if formatting.strip_codes(line).strip() else []
    toks: list[tuple[bool, str]] = []
    for is_code, tok in formatting.tokens(line):
        toks.extend([(True, tok)] if is_code else [(False, c) for c in tok])
    sizes = [len(t.encode("utf-8")) for _, t in toks]
    pieces: list[str] = []
    state: frozenset[str] = frozenset()
    pos, n = 0, len(toks)
    while pos < n:
        head = formatting.reopen(state)
        room = budget - len(head.encode())
        end, used, last_space = pos, 0, -1
        while end < n and used + sizes[end] <= room:
            used += sizes[end]
            if toks[end] == (False, " "):
                last_space = end + 1
            end += 1
        if end < n:
            if last_space > pos + (end - pos) // 2:
                end = last_space
            else:
                back = end
                while back > pos + 1 and not toks[back][0] and _joins_previous(toks[back][1]):
                    back -= 1
                end = back if back > pos + (end - pos) // 2 else end
            end = max(end, pos + 1)
        chunk = toks[pos:end]
        body = "".join(t for _, t in chunk)
        # Servers strip trailing blanks, so a blank piece would arrive empty and be
        # refused (412): it is dropped, which is the only text a split ever loses.
        if any(not is_code and not tok.isspace() for is_code, tok in chunk):
            pieces.append(head + body)
        for is_code, tok in chunk:
            if is_code:
                state = formatting.apply(state, tok)
        pos = end
    return pieces


def _joins_previous(char: str) -> bool:
    """A combining mark, joiner or variation selector: splitting before it would change
    how the previous character looks."""
    return (
        bool(unicodedata.combining(char))
        or char in "\u200c\u200d"
        or ("\ufe00" <= char <= "\ufe0f")
    )


@dataclass(frozen=True, slots=True)
class Outbound:
    """Wire lines for one event: `lines` are messages (echoed with echo-message), `extra`
    commands that are not."""

    lines: tuple[str, ...]
    is_message: bool = True


def build_lines(
    body: str,
    target: str,
    *,
    command: str = "PRIVMSG",
    action: bool = False,
    mask: Mask,
    tags: dict[str, str] | None = None,
) -> Outbound:
    """Splits `body` into as many wire lines as it takes; `body` may hold LF and mIRC
    codes, any other control is dropped."""
    budget = text_budget(mask, command, target, action=action)
    pieces: list[str] = []
    for raw in body.split("\n"):
        text = _clean_keeping_codes(raw)
        pieces.extend(split_line(text, budget))
    lines = []
    for piece in pieces:
        text = f"\x01ACTION {piece}\x01" if action else piece
        lines.append(wire.build(command, target, trailing=text, tags=tags))
    return Outbound(tuple(lines))


def _clean_keeping_codes(text: str) -> str:
    """`clean_text` for the runs between formatting codes; the codes stay."""
    return "".join(
        tok if is_code else clean_text(tok).replace("\n", " ")
        for is_code, tok in formatting.tokens(text)
    )


def line_bytes(mask: Mask, longest_channel: int = 50) -> int:
    """Text bytes one line surely carries (Capabilities.line_bytes): the core counts the
    lines a message will take with it, to decide when to link the full text instead."""
    return text_budget(mask, "PRIVMSG", "#" * longest_channel)
