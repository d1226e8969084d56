"""IRC channels relayed through the whole daemon, on real ngircd and InspIRCd, watched by
ordinary `irc`-library users: what Alice says in one channel Bob sees in the other with
her name and formatting, and the other way round, with no echo; a burst under the stock
flood rules arrives whole and in order without the relay being flooded off; and a server
restart mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imbridge.config.load import parse_config
from imbridge.config.schema import Config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser, eventually, launch
from tests.servers.prosody import Prosody, XmppUser

pytestmark = pytest.mark.integration


def bridge_config(state: Path, networks: dict[str, dict[str, Any]],
                  rooms: list[tuple[str, str]], nick_format: str = "<{nick}@{network}> ",
                  ) -> Config:  # fmt: skip
    """One gateway over `rooms` ((network, channel) pairs); JSON is YAML."""
    return parse_config(json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning", "format": "console"}},
        "networks": networks,
        "gateways": {"g": {"nick_format": nick_format,
                           "rooms": [{"network": n, "room": r} for n, r in rooms]}},
        "archive": {"enabled": False},
    }))  # fmt: skip


@dataclass
class Pair:
    server: Ircd
    alice: IrcUser
    bob: IrcUser
    a: str
    b: str

    def config(self, state: Path, **network: Any) -> Config:
        return bridge_config(state, {"irc": self.server.network(**network)},
                             [("irc", self.a), ("irc", self.b)])  # fmt: skip


@pytest.fixture(params=["ngircd", "inspircd"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    server: Ircd = request.getfixturevalue(request.param)
    alice, bob = await asyncio.gather(
        IrcUser.connect(server, "alice"), IrcUser.connect(server, "bob")
    )
    a, b = server.channel("a"), server.channel("b")
    try:
        await asyncio.gather(alice.join(a), bob.join(b))
        yield Pair(server, alice, bob, a, b)
    finally:
        await alice.close()
        await bob.close()


async def test_irc_channels_relay_text_action_formatting_and_nick_without_echo(
    pair: Pair, tmp_path: Path
) -> None:
    alice, bob = pair.alice, pair.bob
    async with Daemon(pair.config(tmp_path)) as daemon:
        assert await daemon.ready(30)
        alice.say(pair.a, "hello \x02bob\x02")
        alice.act(pair.a, "waves")
        await eventually(lambda: len(bob.messages(pair.b, "relay")) >= 2, what="A -> B")
        text, action = bob.messages(pair.b, "relay")[:2]
        assert (text.kind, text.text) == ("pubmsg", f"<{alice.nick}@irc> hello \x02bob")
        assert (action.kind, action.text) == ("action", f"<{alice.nick}@irc> waves")

        bob.say(pair.b, "hi alice")
        await eventually(lambda: alice.messages(pair.a, "relay"), what="B -> A")
        assert alice.texts(pair.a, "relay") == [f"<{bob.nick}@irc> hi alice"]
        # An echo or a loop would be queued before these sentinels, one per direction.
        alice.say(pair.a, "sentinel a")
        bob.say(pair.b, "sentinel b")
        await eventually(lambda: len(alice.messages(pair.a, "relay")) >= 2, what="sentinel b")
        await eventually(lambda: len(bob.messages(pair.b, "relay")) >= 3, what="sentinel a")
        assert alice.texts(pair.a, "relay") == [
            f"<{bob.nick}@irc> hi alice",
            f"<{bob.nick}@irc> sentinel b",
        ]
        assert len(bob.messages(pair.b, "relay")) == 3
        assert bob.messages(pair.b, "relay")[2].text == f"<{alice.nick}@irc> sentinel a"
        assert daemon.adapters["irc"].connected


async def test_a_line_too_long_once_prefixed_is_split_at_a_word_in_order(
    pair: Pair, tmp_path: Path
) -> None:
    # 454 bytes: fits the line Alice sends, no longer the one the relay sends with a prefix
    words = " ".join(f"w{i:03d}" for i in range(91))
    async with Daemon(pair.config(tmp_path)) as daemon:
        assert await daemon.ready(30)
        pair.alice.say(pair.a, words)
        pair.alice.say(pair.a, "after")
        await eventually(lambda: len(pair.bob.texts(pair.b, "relay")) >= 3, what="relayed")
        first, second, after = pair.bob.texts(pair.b, "relay")
        # Cut between two words (the server strips the blank that ends the first line).
        assert f"{first.rstrip()} {second}" == f"<{pair.alice.nick}@irc> {words}"
        assert first.rstrip().endswith("w089")
        assert second.startswith("w090")
        assert after == f"<{pair.alice.nick}@irc> after"


async def test_server_restart_mid_stream_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """Alice (on one ngircd) talks on while Bob's server (another ngircd) restarts: the
    100 lines said during the outage wait in the outbox and arrive once, in order."""
    src = launch("ngircd", "relaxed", tmp_path / "src")
    dst = launch("ngircd", "relaxed", tmp_path / "dst")
    try:
        alice = await IrcUser.connect(src, "alice")
        bob = await IrcUser.connect(dst, "bob")
        await alice.join("#src")
        await bob.join("#dst")
        # The relay waits 2-4 s before reconnecting, so Bob is back in #dst first and sees
        # what it sends at once.
        networks = {
            "one": src.network(),
            "two": dst.network(reconnect_min_delay=4.0, reconnect_max_delay=8.0),
        }
        config = bridge_config(tmp_path / "state", networks, [("one", "#src"), ("two", "#dst")],
                               nick_format="{nick}: ")  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            for i in range(10):
                alice.say("#src", f"before {i}")
            await eventually(lambda: len(bob.texts("#dst", "relay")) >= 10, what="before")
            await asyncio.to_thread(dst.stop)
            await eventually(lambda: not daemon.adapters["two"].connected, what="outage seen")
            for i in range(100):
                alice.say("#src", f"during {i}")
            await eventually(lambda: daemon.outbox is not None and
                             daemon.outbox.depth("two") == 100, what="100 queued")  # fmt: skip
            await asyncio.to_thread(dst.start)
            await bob.close()
            bob = await IrcUser.connect(dst, "bob")
            await bob.join("#dst")
            await eventually(lambda: len(bob.texts("#dst", "relay")) >= 100, timeout=30,
                             what="queued lines after the restart")  # fmt: skip
            alice.say("#src", "after")  # a duplicate would be queued before it
            await eventually(lambda: len(bob.texts("#dst", "relay")) >= 101, what="sentinel")
            expected = [f"{alice.nick}: during {i}" for i in range(100)]
            assert bob.texts("#dst", "relay") == [*expected, f"{alice.nick}: after"]
        await alice.close()
        await bob.close()
    finally:
        src.stop()
        dst.stop()


async def _burst(source: Ircd, dest: Ircd, state: Path, count: int, filler: int = 0) -> None:
    """`count` lines said at once on a relaxed server, relayed into `dest` (stock flood
    rules): all arrive, in order, and the relay stays connected throughout. The lines are
    short (no sender prefix) because at ngircd's 256 B/s their size sets the test's time."""
    alice = await IrcUser.connect(source, "alice")
    bob = await IrcUser.connect(dest, "bob")
    src, dst = source.channel("s"), dest.channel("d")
    try:
        await asyncio.gather(alice.join(src), bob.join(dst))
        config = bridge_config(state, {"src": source.network(nick="relay" + dest.impl[:3]),
                                       "dst": dest.network()},
                               [("src", src), ("dst", dst)], nick_format="")  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            relay = daemon.adapters["dst"]
            lines = [f"{i} " + "x" * filler if filler else str(i) for i in range(count)]
            for line in lines:
                alice.say(src, line)
            drops = 0

            def arrived() -> bool:
                nonlocal drops
                drops += not relay.connected
                return len(bob.texts(dst, "relay")) >= count

            await eventually(arrived, timeout=120, what=f"{count} lines on {dest.impl}")
            assert bob.texts(dst, "relay") == lines
            assert drops == 0, "the relay lost its connection during the burst"
            assert not [s for s in bob.seen if s.kind == "quit" and s.nick == "relay"]
    finally:
        await alice.close()
        await bob.close()


async def test_burst_under_stock_flood_rules_arrives_whole_in_order_without_disconnect(
    ngircd: Ircd, ngircd_stock: Ircd, inspircd_stock: Ircd, tmp_path: Path
) -> None:
    """300 lines into stock ngircd (3 commands per read, 256 B/s) and, at the same time,
    30 lines of 300 bytes into stock InspIRCd (1 line/s after 10; more than 8 KiB
    unprocessed disconnects, which these 9 KB would do to a client writing them at once).
    The two run concurrently because each takes 30-40 s at those servers' pace."""
    await asyncio.gather(
        _burst(ngircd, ngircd_stock, tmp_path / "ngircd", 300),
        _burst(ngircd, inspircd_stock, tmp_path / "inspircd", 30, filler=300),
    )


async def test_irc_channel_and_xmpp_room_relay_both_ways(
    ngircd: Ircd, prosody: Prosody, tmp_path: Path
) -> None:
    """Across protocols: Alice on IRC and Carol in an XMPP MUC see each other's lines with
    the sender's name, formatting carried as far as each side shows it."""
    jid, password = await asyncio.to_thread(prosody.register)
    alice = await IrcUser.connect(ngircd, "alice")
    carol = await XmppUser.login(prosody)
    chan, muc = ngircd.channel("x"), prosody.room("x")
    try:
        await alice.join(chan)
        await carol.join(muc, "carol")
        xmpp = {"type": "xmpp", "jid": jid, "password": password, "host": prosody.host,
                "port": prosody.port, "tls": "plain", "nick": "relay"}  # fmt: skip
        config = bridge_config(tmp_path, {"irc": ngircd.network(), "xm": xmpp},
                               [("irc", chan), ("xm", muc)])  # fmt: skip
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            alice.say(chan, "hello \x02xmpp\x02")
            await eventually(lambda: any("hello" in b for b in carol.bodies(muc)), what="to XMPP")
            assert f"<{alice.nick}@irc> hello xmpp" in carol.bodies(muc)
            carol.say(muc, "hello irc")
            await eventually(lambda: alice.texts(chan, "relay"), what="to IRC")
            assert alice.texts(chan, "relay") == ["<carol@xm> hello irc"]
    finally:
        await alice.close()
        await carol.close()
