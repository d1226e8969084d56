"""IRC lines as values: parsing what the server sends, and building what the relay sends
so that nothing from another network can end a line early or add a parameter.

RFC 1459 §2.3 / RFC 2812 §2.3.1 and IRCv3 message-tags. Invariant of every builder here:
the returned line holds no CR, LF or NUL, and encodes to at most 510 bytes (the 512 of the
RFC less the CR LF the library appends); tags are counted apart, within their own 4 094
bytes (message-tags §Size limit). Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from imbridge.sanitize import decode_wire

MAX_LINE = 510  # RFC 1459 §2.3: 512 bytes with the trailing CR LF
MAX_TAGS = 4094  # message-tags: 4096 with the '@' and the space
_FORBIDDEN = frozenset("\r\n\0")
_TAG_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class UnsafeLine(ValueError):
    """A parameter that would break the line (space in a middle parameter, CR/LF/NUL)."""


@dataclass(frozen=True, slots=True)
class Source:
    """The prefix of a line: `nick!user@host`, or a server name (no `!`/`@`)."""

    nick: str
    user: str = ""
    host: str = ""

    @classmethod
    def parse(cls, prefix: str) -> Source:
        nick, _, rest = prefix.partition("!")
        user, _, host = rest.partition("@")
        if not rest and "@" in nick:
            nick, _, host = nick.partition("@")
        return cls(nick, user, host)

    @property
    def is_server(self) -> bool:
        return not self.user and not self.host and "." in self.nick

    def __str__(self) -> str:
        if self.user or self.host:
            return f"{self.nick}!{self.user}@{self.host}"
        return self.nick


@dataclass(frozen=True, slots=True)
class Line:
    command: str
    params: tuple[str, ...] = ()
    source: Source | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def param(self, index: int) -> str:
        return self.params[index] if len(self.params) > index else ""

    @property
    def nick(self) -> str:
        return self.source.nick if self.source else ""


def parse(raw: bytes | str) -> Line | None:
    """One line as received (without CR LF); None for an empty or garbled line, which a
    server may send and which is never worth dropping the connection over."""
    text = decode_wire(raw) if isinstance(raw, bytes) else raw
    text = text.rstrip("\r\n")
    tags: dict[str, str] = {}
    if text.startswith("@"):
        raw_tags, _, text = text[1:].partition(" ")
        tags = parse_tags(raw_tags)
    text = text.lstrip(" ")
    source = None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        source = Source.parse(prefix) if prefix else None
    text = text.lstrip(" ")
    if not text:
        return None
    head, sep, trailing = text.partition(" :")
    if text.startswith(":"):
        return None
    params = head.split()
    command = params.pop(0).upper()
    if sep:
        params.append(trailing)
    return Line(command, tuple(params), source, tags)


def parse_tags(raw: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = unescape_tag(value)
    return tags


def unescape_tag(value: str) -> str:
    out: list[str] = []
    it = iter(value)
    for c in it:
        if c == "\\":
            nxt = next(it, "")
            out.append(_TAG_UNESCAPES.get(nxt, nxt))
        else:
            out.append(c)
    return "".join(out)


def escape_tag(value: str) -> str:
    return "".join(_TAG_ESCAPES.get(c, c) for c in value if c != "\0")


def format_tags(tags: dict[str, str]) -> str:
    """`@k=v;k2 ` or '' (the prefix of a line carrying tags)."""
    if not tags:
        return ""
    items = [k if not v else f"{k}={escape_tag(v)}" for k, v in tags.items()]
    text = "@" + ";".join(items) + " "
    if len(text.encode()) > MAX_TAGS + 2:
        raise UnsafeLine("tags too long")
    return text


def build(
    command: str, *middle: str, trailing: str | None = None, tags: dict[str, str] | None = None
) -> str:
    """A line from parts that are checked, never trusted: a middle parameter with a space
    or a leading ':' would shift the parameters, a CR, LF or NUL would end the line."""
    for part in (command, *middle):
        if not part or part.startswith(":") or " " in part or _FORBIDDEN & set(part):
            raise UnsafeLine(f"unsafe parameter {part!r}")
    parts = [command, *middle]
    if trailing is not None:
        if _FORBIDDEN & set(trailing):
            raise UnsafeLine("CR, LF or NUL in the trailing parameter")
        parts.append(":" + trailing)
    line = " ".join(parts)
    if len(line.encode("utf-8")) > MAX_LINE:
        raise UnsafeLine("line longer than 510 bytes")
    return format_tags(tags or {}) + line


def server_time(tags: dict[str, str]) -> datetime | None:
    """The IRCv3 `time` tag (server-time), if present and well-formed."""
    value = tags.get("time")
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def prefix_bytes(nick: str, user: str, host: str) -> int:
    """Bytes the server adds in front of a relayed line: `:nick!user@host `."""
    return len(f":{nick}!{user}@{host} ".encode())


# Used when the relay does not know its own user@host yet: the longest the common
# servers allow (USERLEN 10 on ngircd and InspIRCd, HOSTLEN 63, RFC 2812 hostname).
UNKNOWN_USER_LEN = 10
UNKNOWN_HOST_LEN = 63
