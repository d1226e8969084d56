"""Hostile and malformed input thrown at the running bridge, one network at a time.

One gateway spans an ngircd channel, a Prosody MUC and a Synapse room, each watched by an
ordinary client of its own network. A hostile user on one network sends what that
protocol lets through (samples in `tests/data/hostile/`, plus an oversized message and a
display name made of control, bidi and zero-width characters); then a good message.
The promise (design.md, "What bad input gets"): the daemon keeps every connection, the
far sides see only sanitised text and markup (no control character, no bidi override in a
sender's name, no script, no command smuggled into IRC), what must be dropped is dropped,
and the next good message arrives as usual.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from string import Template
from typing import Any

import nio
import pytest

from imbridge.adapters.xmpp import XmppAdapter
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

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
        assert xm._generation == self.xmpp_generation
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


def _keep_raw(trio: Trio) -> None:
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


@pytest.fixture
async def trio(
    ngircd: Ircd, prosody: Prosody, synapse: SynapseServer, tmp_path: Path
) -> AsyncIterator[Trio]:
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    chan, victim, muc = ngircd.channel("hostile"), ngircd.channel("victim"), prosody.room("hostile")
    irc_nick, xmpp_nick = "relay" + secrets.token_hex(2), "relay" + secrets.token_hex(2)
    ivan = await IrcUser.connect(ngircd, "ivan")
    xavier = await XmppUser.login(prosody)
    try:
        await ivan.join(chan)
        await ivan.join(victim)  # a command smuggled into IRC could post here
        await xavier.join(muc, "xavier")
        alice_user = synapse.register("alice" + secrets.token_hex(3))
        async with Watcher(synapse, alice_user) as alice:
            # Anyone may set the topic and state: the hostile user needs no rights.
            room = await alice.create_room(
                invite=[relay_mx.user_id],
                power_level_override={"state_default": 0, "events": {}},
            )
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
                "networks": {
                    "irc": ngircd.network(nick=irc_nick),
                    "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                           "host": prosody.host, "port": prosody.port, "tls": "plain",
                           "nick": xmpp_nick},
                    "mx": {"type": "matrix", "homeserver": synapse.url,
                           "user_id": relay_mx.user_id, "access_token": relay_mx.access_token,
                           "sync_timeout_ms": 1000},
                },
                "gateways": {"g": {"nick_format": "<{nick}@{network}> ", "rooms": [
                    {"network": "irc", "room": chan}, {"network": "xm", "room": muc},
                    {"network": "mx", "room": room}]}},
                "archive": {"retention_days": 30},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(60)
                trio = Trio(daemon, ngircd, prosody, synapse, chan, victim, muc, room, ivan,
                            xavier, alice, relay_mx, irc_nick, xmpp_nick)  # fmt: skip
                xm = daemon.adapters["xm"]
                assert isinstance(xm, XmppAdapter)
                trio.xmpp_generation = xm._generation
                _keep_raw(trio)
                yield trio
    finally:
        await xavier.close()
        await ivan.close()


# --- IRC ---------------------------------------------------------------------------------


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


async def test_hostile_irc_bytes_reach_xmpp_and_matrix_sanitised_and_bridge_carries_on(
    trio: Trio,
) -> None:
    samples = irc_samples()
    nick = "mal" + secrets.token_hex(2)
    mallory = await RawIrc.connect(trio.ngircd, nick)
    try:
        chan = trio.chan.encode()
        mallory.send(b"JOIN " + chan)
        mallory.send(b"PRIVMSG " + chan + b" :warmup")
        await trio.reached("warmup", irc=False)
        far = trio.far()
        for s in samples:
            mallory.send(b"PRIVMSG " + chan + b" :" + s.payload)
        # The longest line the server takes, in 2-byte characters: relaying it with
        # Mallory's prefix, ngircd cuts it at 512 bytes, inside a character. Then a NOTICE
        # and a TOPIC with hostile text.
        head = b"PRIVMSG " + chan + b" :m20 "
        mallory.send(head + "é".encode() * ((510 - len(head)) // 2))
        mallory.send(b"NOTICE " + chan + b" :m21 notice \x1b[2J\xe2\x80\xae end21")
        mallory.send(b"TOPIC " + chan + b" :m22 topic \x1b]0;t\x07\xff\xe2\x80\xae end22")
        mallory.send(b"PRIVMSG " + chan + b" :good after bad")
        await trio.reached("good after bad", irc=False, far=far)
    finally:
        await mallory.close()

    for texts, where in ((far.xmpp_bodies(), "XMPP"), (far.matrix_bodies(), "Matrix")):
        for text in texts:
            assert_clean_text(text)
            assert_clean_prefix(text, nick, "irc")
        check_markers(texts, samples, where)
        for word in ("m20", "m21", "end21", "m22", "end22"):
            assert any(word in t for t in texts), f"{word} never reached {where}"
        # Only the relayed samples, the three extra lines and the good one: nothing else.
        relayed = sum(s.expect == "relayed" for s in samples)
        assert len(texts) == relayed + 4, texts
        assert texts[-1] == f"<{nick}@irc> good after bad"
        long = next(t for t in texts if "m20" in t)
        assert "\u00e9" * 200 in long, long  # UTF-8 up to the server's cut,
        assert "\u00c3" not in long, long  # not CP1252 mojibake
    invalid = next(t for t in far.matrix_bodies() if "m01" in t)
    assert "\ufffd" in invalid or "\u00ff" in invalid  # undecodable bytes shown, not lost
    for event in far.matrix():
        if "formatted_body" in event["content"]:
            assert_safe_html(event["content"]["formatted_body"])
    for msg in far.xmpp():
        if (html := msg.find(XHTML_IM)) is not None:
            assert_safe_xhtml(html)
    assert not far.irc(), "echoed back into IRC"
    trio.assert_connections_kept()


# --- XMPP --------------------------------------------------------------------------------


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


async def test_hostile_xmpp_stanzas_reach_irc_and_matrix_sanitised_and_bridge_carries_on(
    trio: Trio,
) -> None:
    samples = json_samples("xmpp-stanzas.json", "stanzas")
    mallory = await XmppUser.login(trio.prosody)
    # Prosody refuses a MUC nick with a bidi or control character (jid-malformed) and
    # maps zero-width ones away; what it lets through must still read as one clean name.
    nick = "mal\u00a0\u200bx\u034f"
    clean = "mal x"
    try:
        mallory.client.send_raw(
            f"<presence to='{trio.muc}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        mallory.say(trio.muc, "warmup")
        await trio.reached("warmup", xmpp=False)
        far = trio.far()
        values = {"room": trio.muc, "relay": f"{trio.muc}/{trio.xmpp_nick}",
                  "victim": trio.victim}  # fmt: skip
        for s in samples:
            mallory.client.send_raw(Template(s.payload["xml"]).substitute(values))
        # Oversized: 200 000 characters, under Prosody's 256 KiB stanza limit.
        mallory.say(trio.muc, "x20 " + "0123456789" * 20_000 + " end20")
        mallory.say(trio.muc, "good after bad")
        await trio.reached("good after bad", xmpp=False, far=far)
    finally:
        await mallory.close()

    irc = far.irc()
    assert_irc_lines_safe(trio, far)
    assert irc[-1] == f"<{clean}@xm> good after bad"
    assert irc[0].startswith(f"<{clean}@xm> ")
    check_markers(irc, samples, "IRC")
    assert "x20" in "".join(irc)
    bodies = far.matrix_bodies()
    for text in bodies:
        assert_clean_text(text)
        assert_clean_prefix(text, clean, "xm")
    check_markers(bodies, samples, "Matrix")
    relayed = sum(s.expect == "relayed" for s in samples)
    assert len(bodies) == relayed + 2, bodies
    assert bodies[-1] == f"<{clean}@xm> good after bad"
    big = next(b for b in bodies if "x20" in b)
    assert 20_000 < len(big.encode()) <= 64 * 1024  # cut to fit a Matrix event, not lost
    for event in far.matrix():
        if "formatted_body" in event["content"]:
            assert_safe_html(event["content"]["formatted_body"])
    assert not far.xmpp(), "echoed back into XMPP"
    trio.assert_connections_kept()


# --- Matrix ------------------------------------------------------------------------------


async def test_hostile_matrix_events_reach_irc_and_xmpp_sanitised_and_bridge_carries_on(
    trio: Trio,
) -> None:
    samples = json_samples("matrix-events.json", "events")
    mallory_user = trio.synapse.register("mal" + secrets.token_hex(3))
    invited = await trio.alice.client.room_invite(trio.room, mallory_user.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    async with Watcher(trio.synapse, mallory_user) as mallory:
        await mallory.join(trio.room)
        resp = await mallory.client.set_displayname(HOSTILE_NAME)
        assert isinstance(resp, nio.ProfileSetDisplayNameResponse), resp
        warmup = await mallory.text(trio.room, "warmup")
        await trio.reached("warmup", matrix=False)
        far = trio.far()
        for s in samples:
            text = json.dumps(s.payload["content"])
            text = text.replace("$victim", trio.victim).replace("$warmup", warmup)
            content = json.loads(text)
            if "state_key" in s.payload:
                put = await mallory.client.room_put_state(
                    trio.room, s.payload["type"], content, state_key=s.payload["state_key"]
                )
                assert isinstance(put, nio.RoomPutStateResponse), (put.message, s.payload)
            else:
                sent = await mallory.client.room_send(
                    trio.room, s.payload.get("type", "m.room.message"), content
                )
                assert isinstance(sent, nio.RoomSendResponse), (sent.message, s.payload)
        # Oversized: 60 000 bytes, near the 64 KiB a Matrix event may take.
        await mallory.text(trio.room, "y20 " + "0123456789" * 6_000 + " end20")
        await mallory.text(trio.room, "good after bad")
        await trio.reached("good after bad", matrix=False, far=far)

    clean = "malexe.txt [31mred" + "x" * (64 - len("malexe.txt [31mred"))
    irc = far.irc()
    assert_irc_lines_safe(trio, far)
    assert irc[-1] == f"<{clean}@mx> good after bad"
    check_markers(irc, samples, "IRC")
    assert any("y20" in t for t in irc)
    bodies = far.xmpp_bodies()
    for text in bodies:
        assert_clean_text(text)
        assert_clean_prefix(text, clean, "mx")
    check_markers(bodies, samples, "XMPP")
    relayed = sum(s.expect == "relayed" for s in samples)
    assert len(bodies) == relayed + 2, bodies
    assert bodies[-1] == f"<{clean}@mx> good after bad"
    for msg in far.xmpp():
        if (html := msg.find(XHTML_IM)) is not None:
            assert_safe_xhtml(html)
    assert not far.matrix(), "echoed back into Matrix"
    trio.assert_connections_kept()
