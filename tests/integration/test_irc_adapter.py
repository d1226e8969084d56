"""The IRC adapter on its own against real ngircd and InspIRCd, with ordinary clients as
the people in the channels: text from another network can never inject a command,
echo-message acknowledgements carry the server's message id, TLS is verified, a taken
nick falls back, and a kick is followed by a rejoin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapter import Outgoing
from imbridge.adapters.irc import IrcAdapter, IrcConfig
from imbridge.errors import AdapterError
from imbridge.events import (
    Event,
    Message,
    MessageKind,
    Origin,
    Sender,
    new_event_id,
)
from imbridge.testing import DictCursors
from tests.servers.ircd import Ircd, IrcUser, eventually

pytestmark = pytest.mark.integration


def outgoing(room: str, text: str, kind: MessageKind = MessageKind.TEXT) -> Outgoing:
    origin = Origin(network="xm", room="r", sender=Sender(id="mallory", name="mallory"))
    event = Message(id=new_event_id(), origin=origin, text=text, kind=kind)
    return Outgoing(room=room, event=event, txn_id=event.id)


class Harness:
    """An adapter started with a sink that keeps what it is given."""

    def __init__(self, server: Ircd, **network: Any) -> None:
        config = IrcConfig.model_validate(server.network(**network))
        self.adapter = IrcAdapter("irc", config, DictCursors())
        self.events: list[Event] = []

    async def sink(self, event: Event) -> None:
        self.events.append(event)

    async def __aenter__(self) -> IrcAdapter:
        await self.adapter.start(self.sink)
        return self.adapter

    async def __aexit__(self, *exc: object) -> None:
        await self.adapter.aclose()


@pytest.fixture(params=["ngircd", "inspircd"])
def server(request: pytest.FixtureRequest) -> Ircd:
    found: Ircd = request.getfixturevalue(request.param)
    return found


@pytest.fixture
async def people(server: Ircd) -> AsyncIterator[tuple[IrcUser, IrcUser]]:
    bob, observer = await asyncio.gather(IrcUser.connect(server, "bob"),
                                         IrcUser.connect(server, "obs"))  # fmt: skip
    try:
        yield bob, observer
    finally:
        await bob.close()
        await observer.close()


INJECTIONS = [
    "a\r\nPRIVMSG {other} :crlf injected",
    "b\rPRIVMSG {other} :lone cr injected",
    "c\nJOIN {other}",
    "d\0PRIVMSG {other} :after nul",
    "e\x01ACTION \x01\r\nQUIT :bye",
    "\r\nKICK {chan} {bob} :injected kick",
    "f\u2028PART {chan}\u0085MODE {chan} +m",
]


async def test_relayed_text_never_injects_a_command(
    server: Ircd, people: tuple[IrcUser, IrcUser]
) -> None:
    bob, observer = people
    chan, other = server.channel("inj"), server.channel("other")
    await asyncio.gather(bob.join(chan), observer.join(other))
    async with Harness(server) as relay:
        await relay.join(chan)
        connection = relay._connection  # the one connection: it must never be replaced
        for template in INJECTIONS:
            text = template.format(other=other, chan=chan, bob=bob.nick)
            await relay.send(outgoing(chan, text))
        await relay.send(outgoing(chan, "end"))
        await eventually(lambda: "end" in bob.texts(chan, "relay"), what="the end marker")
        # A sentinel for the observer: Bob writes to them only after the server handled
        # every line of the relay's, so anything injected reaches them before it.
        bob.say(observer.nick, "sentinel")
        await eventually(
            lambda: any(s.text == "sentinel" for s in observer.seen), what="the sentinel"
        )
        assert observer.messages(other) == []
        assert [s for s in observer.seen if s.nick == "relay"] == []
        assert relay.connected
        assert relay._connection is connection
        assert not [s for s in bob.seen if s.kind in ("kick", "part", "quit")]
        texts = bob.texts(chan, "relay")
        assert f"PRIVMSG {other} :crlf injected" in texts  # shown as text, not obeyed
        assert texts[-1] == "end"


async def test_echo_message_acknowledges_with_the_servers_message_id(
    inspircd: Ircd,
) -> None:
    bob = await IrcUser.connect(inspircd, "bob")
    chan = inspircd.channel("echo")
    try:
        await bob.join(chan)
        async with Harness(inspircd) as relay:
            await relay.join(chan)
            assert relay.echo_enabled
            assert relay.tags_enabled
            first = await relay.send(outgoing(chan, "one"))
            second = await relay.send(outgoing(chan, "two", MessageKind.EMOTE))
            # InspIRCd msgids look like "<sid>~<time>~<n>": the echo gave them, not the txn.
            assert first.count("~") == 2
            assert second.count("~") == 2
            assert first != second
            await eventually(lambda: len(bob.messages(chan, "relay")) == 2, what="two lines")
    finally:
        await bob.close()


async def test_relay_marker_tag_is_sent_and_recognised_by_a_second_relay(inspircd: Ircd) -> None:
    chan = inspircd.channel("peer")
    one_h, peer = Harness(inspircd), Harness(inspircd, nick="peerrelay")
    async with one_h as one, peer as two:
        await one.join(chan)
        await two.join(chan)
        await one.send(outgoing(chan, "from the first bridge"))
        await eventually(lambda: any(isinstance(e, Message) for e in peer.events),
                         what="the peer bridge saw it")  # fmt: skip
        (seen,) = [e for e in peer.events if isinstance(e, Message)]
        assert seen.origin.relayed  # so the peer never relays it back


async def test_tls_is_verified_against_the_given_ca_and_refused_without_it(
    ngircd: Ircd, tmp_path: Path
) -> None:
    tls = {"tls": True, "port": ngircd.tls_port}
    async with Harness(ngircd, **tls, tls_ca_file=str(ngircd.cert)) as relay:
        assert relay.connected
    async with Harness(ngircd, **tls, tls_verify=False) as relay:
        assert relay.connected
    refused = Harness(ngircd, **tls)  # system CAs: the self-signed certificate is refused
    with pytest.raises(AdapterError, match="certificate"):
        await refused.adapter.start(refused.sink)
    await refused.adapter.aclose()


async def test_taken_nick_falls_back_and_kick_is_followed_by_a_rejoin(ngircd: Ircd) -> None:
    squatter = await IrcUser.connect(ngircd, "op")
    chan = ngircd.channel("kick")
    try:
        await squatter.join(chan)  # first in: channel operator
        async with Harness(ngircd, nick=squatter.nick, rejoin_delay=0.1) as relay:
            assert relay.identity == squatter.nick + "_"
            await relay.join(chan)
            squatter.raw(f"KICK {chan} {relay.identity} :out")
            await eventually(lambda: any(s.kind == "kick" for s in squatter.seen), what="kick")

            def joins() -> int:
                return sum(s.kind == "join" and s.nick == relay.identity for s in squatter.seen)

            await eventually(lambda: joins() == 2, what="rejoined after the kick")
            await relay.send(outgoing(chan, "back"))
            await eventually(lambda: squatter.texts(chan, relay.identity) == ["back"],
                             what="relaying again")  # fmt: skip
    finally:
        await squatter.close()
