"""What the hostile-input tests throw and how they judge what arrives: the samples, the
checks of sanitised text and markup, the world of one gateway over three networks
(`Trio`), and a raw IRC client that writes whatever bytes it likes."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from imbridge.adapters.xmpp import XmppAdapter
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher, wait_for

DATA = Path(__file__).resolve().parents[1] / "data" / "hostile"
XHTML_IM = "{http://jabber.org/protocol/xhtml-im}html"
XHTML = "http://www.w3.org/1999/xhtml"

# What no relayed text may hold: C0 except tab and newline, DEL, C1, surrogates and
# noncharacters. IRC lines may also hold mIRC formatting codes, and \x01 only as the
# frame of a CTCP ACTION.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
IRC_CODES = re.compile(r"[\x02\x03\x0f\x11\x16\x1d\x1e\x1f]")
# Bidi embeddings, overrides, isolates and marks, and zero-width characters: never in
# the name a relayed message is shown under.
INVISIBLE = re.compile(r"[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Markup a reader's client may render: the neutral subset and what adapters build from it.
SAFE_TAGS = frozenset(
    {"a", "b", "blockquote", "br", "code", "del", "em", "i", "li", "ol", "p", "pre", "s",
     "strong", "u", "ul", "span", "body", "html"}
)  # fmt: skip
SAFE_SCHEMES = ("http://", "https://", "mailto:", "xmpp:", "matrix:", "irc://", "ircs://")
SAFE_STYLES = frozenset({"text-decoration: underline", "text-decoration: line-through"})
# Matrix display name of the hostile user: bidi override, zero-width, line break, tab,
# terminal escape, and 200 characters more than any name should take.
HOSTILE_NAME = "mal\u202eexe.txt\u200b\n\t\x1b[31mred\u2066" + "x" * 200


@dataclass
class Sample:
    expect: str  # "relayed" or "dropped"
    markers: list[str]
    payload: Any
    absent: list[str] = field(default_factory=list)


def irc_samples() -> list[Sample]:
    out = []
    for line in (DATA / "irc-privmsg.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        expect, _, literal = line.partition(" ")
        payload = ast.literal_eval(literal)
        assert isinstance(payload, bytes)
        words = re.findall(rb"\b(m\d\d|end\d\d)\b", payload)
        out.append(Sample(expect, [w.decode() for w in words], payload))
    return out


def json_samples(name: str, key: str) -> list[Sample]:
    data = json.loads((DATA / name).read_text())
    return [
        Sample(s["expect"], s["markers"], s, s.get("absent", [])) for s in data[key]
    ]  # fmt: skip


# --- what a reader's client shows -------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_safe_markup(elements: Iterable[tuple[str, Iterable[tuple[str, str | None]]]]) -> None:
    """Every element is one a client may render, with no script-bearing attribute."""
    for tag, attrs in elements:
        assert tag in SAFE_TAGS, f"<{tag}> crossed the bridge"
        for name, value in attrs:
            if name == "href":
                assert (value or "").strip().lower().startswith(SAFE_SCHEMES), value
            elif name == "style":
                assert value in SAFE_STYLES, value
            else:
                assert name in ("xmlns",), f"attribute {name}={value!r} crossed the bridge"


def assert_safe_html(markup: str) -> None:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    assert_safe_markup(parser.found)
    assert not CONTROL.search(markup), repr(markup)


def assert_safe_xhtml(html: ET.Element) -> None:
    elements = []
    for el in html.iter():
        ns, _, local = el.tag[1:].partition("}")
        assert ns in (XHTML, XHTML_IM[1:].partition("}")[0]), el.tag
        elements.append((local, list(el.attrib.items())))
    assert_safe_markup(elements)
    assert not CONTROL.search("".join(html.itertext())), ET.tostring(html)


def assert_clean_text(text: str) -> None:
    assert not CONTROL.search(text), repr(text)


def assert_clean_prefix(text: str, nick: str, network: str) -> None:
    """The relayed line starts with the sender's cleaned name and nothing can hide in it."""
    shown = text.removeprefix("/me ")  # XMPP's emote convention
    assert shown.startswith(f"<{nick}@{network}> "), repr(text[:120])
    assert not INVISIBLE.search(nick), repr(nick)


def check_markers(texts: list[str], samples: list[Sample], where: str) -> None:
    joined = "\n".join(texts)
    for s in samples:
        for word in s.absent:
            assert word not in joined, f"{word!r} reached {where}"
        for word in s.markers:
            if s.expect == "relayed":
                assert word in joined, f"{word!r} ({s.payload!r}) never reached {where}"
            else:
                assert word not in joined, f"dropped {word!r} reached {where}"


# --- the three networks in one gateway --------------------------------------------------


@dataclass
class Far:
    """What the ordinary client on each network saw from the relay since `mark`."""

    trio: Trio
    irc_mark: int = 0
    irc_raw_mark: int = 0
    xmpp_mark: int = 0
    mx_mark: int = 0

    def irc(self) -> list[str]:
        t = self.trio
        return [s.text for s in t.ivan.seen[self.irc_mark :] if s.nick == t.irc_nick]

    def irc_raw(self) -> list[str]:
        return self.trio.relay_raw[self.irc_raw_mark :]

    def xmpp(self) -> list[ET.Element]:
        t = self.trio
        own = f"{t.muc}/{t.xmpp_nick}"
        return [m for m in t.xavier.messages[self.xmpp_mark :] if m.get("from") == own]

    def xmpp_bodies(self) -> list[str]:
        return [m.findtext("{jabber:client}body") or "" for m in self.xmpp()]

    def matrix(self) -> list[dict[str, Any]]:
        t = self.trio
        return t.alice.messages(t.room, sender=t.relay_mx.user_id)[self.mx_mark :]

    def matrix_bodies(self) -> list[str]:
        return [str(e["content"].get("body", "")) for e in self.matrix()]


@dataclass
class Trio:
    daemon: Daemon
    ngircd: Ircd
    prosody: Prosody
    synapse: SynapseServer
    chan: str
    victim: str
    muc: str
    room: str
    ivan: IrcUser
    xavier: XmppUser
    alice: Watcher
    relay_mx: MatrixUser
    irc_nick: str
    xmpp_nick: str
    xmpp_generation: int = 0
    relay_raw: list[str] = field(default_factory=list)

    def far(self) -> Far:
        return Far(self, len(self.ivan.seen), len(self.relay_raw), len(self.xavier.messages),
                   len(self.alice.messages(self.room, sender=self.relay_mx.user_id)))  # fmt: skip

    async def reached(self, word: str, *, irc: bool = True, xmpp: bool = True,
                      matrix: bool = True, far: Far | None = None) -> None:  # fmt: skip
        """Waits until `word` arrived on each named side (counted from `far`)."""
        far = far or Far(self)
        await wait_for(
            lambda: (
                (not irc or any(word in t for t in far.irc()))
                and (not xmpp or any(word in b for b in far.xmpp_bodies()))
                and (not matrix or any(word in b for b in far.matrix_bodies()))
            ),
            timeout=30,
            what=f"{word} relayed",
        )

    def assert_connections_kept(self) -> None:
        """No network was dropped: no reconnect seen by the daemon, the relay never left
        the IRC channel, never spoke anywhere but there, and the XMPP stream is the first."""
        d = self.daemon
        assert all(a.connected for a in d.adapters.values())
        assert not any(d.reconnects.values()), d.reconnects
        xm = d.adapters["xm"]
        assert isinstance(xm, XmppAdapter)
        assert xm._session.generation == self.xmpp_generation
        relay_moves = [s for s in self.ivan.seen if s.nick == self.irc_nick
                       and s.kind in ("quit", "part", "kick", "nick", "join")]  # fmt: skip
        assert [s.kind for s in relay_moves] == ["join"], relay_moves
        assert not self.ivan.messages(self.victim)
        relay = d.relay
        assert relay is not None
        assert all(s.errors == 0 for s in relay.stats.values()), relay.stats
        outbox = d.outbox
        assert outbox is not None
        assert all(s.failed == 0 for s in outbox.stats.values()), outbox.stats


def keep_raw(trio: Trio) -> None:
    """Every raw line the relay sends that reaches Ivan, plus CTCP other than ACTION."""

    def on_raw(_conn: Any, event: Any) -> None:
        line = str(event.arguments[0])
        if line.startswith(f":{trio.irc_nick}!"):
            trio.relay_raw.append(line)

    # Ivan's client must survive the hostile user's raw bytes in the channel too.
    trio.ivan.conn.buffer.errors = "replace"
    trio.ivan.conn.add_global_handler("all_raw_messages", on_raw, -20)
    trio.ivan.conn.add_global_handler("ctcp", trio.ivan._keep, -10)
    trio.ivan.conn.add_global_handler("ctcpreply", trio.ivan._keep, -10)


class RawIrc:
    """A hostile IRC client: writes whatever bytes it likes, as the protocol allows."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._task = asyncio.create_task(self._pong())
        self.lines: list[bytes] = []

    @classmethod
    async def connect(cls, server: Ircd, nick: str) -> RawIrc:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(f"NICK {nick}\r\nUSER mal 0 * :mal\r\n".encode())
        self = cls(reader, writer)
        await wait_for(lambda: any(b" 001 " in x for x in self.lines), what="registered")
        return self

    async def _pong(self) -> None:
        while line := await self.reader.readline():
            self.lines.append(line)
            if line.startswith(b"PING "):
                self.writer.write(b"PONG " + line[5:])

    def send(self, line: bytes) -> None:
        assert not set(line) & {0x0D, 0x0A}, line  # a line break would end the line early
        self.writer.write(line + b"\r\n")

    async def close(self) -> None:
        self.send(b"QUIT :bye")
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.writer.close()
        await self.writer.wait_closed()


def assert_irc_lines_safe(trio: Trio, far: Far) -> None:
    """Each line the relay sent is one PRIVMSG or NOTICE into the bridged channel whose
    text holds no control but formatting codes (and an ACTION frame)."""
    raw = far.irc_raw()
    assert raw
    for line in raw:
        parsed = re.fullmatch(r":(\S+) (\S+) (\S+) :(.*)", line)
        assert parsed is not None, line
        _, command, target, text = parsed.groups()
        assert command in ("PRIVMSG", "NOTICE"), line
        assert target.lower() == trio.chan.lower(), line
        if text.startswith("\x01ACTION ") and text.endswith("\x01"):
            text = text[8:-1]
        assert "\x01" not in text, repr(line)
        assert_clean_text(IRC_CODES.sub("", text))
    ctcp = [s for s in far.trio.ivan.seen if s.kind in ("ctcp", "ctcpreply")]
    assert all(s.kind == "ctcp" and s.text == "ACTION" for s in ctcp), ctcp
