"""The adapter on its own against a real Prosody: verified TLS both ways, a taken nick,
a kick, and incoming events in order with the relay's own reflections held back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import slixmpp

from imbridge.adapter import Outgoing
from imbridge.adapters.xmpp import XmppAdapter, XmppConfig
from imbridge.errors import AdapterError
from imbridge.events import Event, Message, MessageKind, Origin, Sender, new_event_id
from imbridge.testing import DictCursors
from tests.integration.test_xmpp_resilience import xmpp_network
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration


@asynccontextmanager
async def running(
    prosody: Prosody, events: list[Event], **extra: Any
) -> AsyncIterator[XmppAdapter]:
    jid, password = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, password, **extra))
    adapter = XmppAdapter("xm", config, DictCursors())

    async def sink(event: Event) -> None:
        events.append(event)

    try:
        await adapter.start(sink)
        yield adapter
    finally:
        await adapter.aclose()


def message(text: str) -> Message:
    origin = Origin(network="irc", room="#x", sender=Sender(id="carol", name="carol"))
    return Message(id=new_event_id(), origin=origin, text=text)


@pytest.mark.parametrize("mode", ["starttls", "direct"])
async def test_xmpp_tls_is_verified_against_the_configured_ca(prosody: Prosody, mode: str) -> None:
    port = prosody.tls_port if mode == "direct" else prosody.port
    async with running(prosody, [], tls=mode, port=port, ca_file=str(prosody.cert)) as adapter:
        assert adapter.connected
        client = adapter._session.client
        assert client is not None
        assert client.transport is not None
        assert client.transport.get_extra_info("ssl_object") is not None


@pytest.mark.parametrize("mode", ["starttls", "direct"])
async def test_xmpp_unverifiable_certificate_refuses_to_log_in(prosody: Prosody, mode: str) -> None:
    port = prosody.tls_port if mode == "direct" else prosody.port
    jid, password = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, password, tls=mode, port=port))
    adapter = XmppAdapter("xm", config, DictCursors())
    try:
        async with asyncio.timeout(10):  # refused at once, not after the login timeout
            with pytest.raises(AdapterError):
                await adapter.start(_ignore)
    finally:
        await adapter.aclose()


async def _ignore(_event: Event) -> None:
    return None


async def test_xmpp_taken_nick_falls_back_and_kick_rejoins(prosody: Prosody) -> None:
    room = prosody.room("nick")
    alice = await XmppUser.login(prosody)
    events: list[Event] = []
    try:
        await alice.join(room, "relay")  # the relay's nick is taken, and Alice owns the room
        async with running(prosody, events) as adapter:
            await adapter.join(room)
            state = adapter._rooms[room]
            assert state.nick == "relay_"
            await alice.client.plugin["xep_0045"].set_role(slixmpp.JID(room), "relay_", "none")
            await eventually(lambda: not state.joined, what="kicked")
            await eventually(lambda: state.joined, timeout=15, what="rejoined after the kick")
            await adapter.send(Outgoing(room=room, event=message("back"), txn_id="k1"))
            await eventually(lambda: "back" in alice.bodies(room), what="message after rejoin")
    finally:
        await alice.close()


async def test_xmpp_incoming_events_in_order_without_own_reflections(prosody: Prosody) -> None:
    room = prosody.room("order")
    alice = await XmppUser.login(prosody)
    events: list[Event] = []

    def said() -> list[str]:
        return [e.text for e in events if isinstance(e, Message)]

    try:
        async with running(prosody, events) as adapter:
            await adapter.join(room)
            await alice.join(room, "alice")
            for n in range(50):
                alice.say(room, f"n{n}")
            alice.say(room, "/me waves")
            remote = await adapter.send(Outgoing(room=room, event=message("mine"), txn_id="o"))
            again = await adapter.send(Outgoing(room=room, event=message("mine"), txn_id="o"))
            assert remote == again  # a retry of the same item is not posted twice
            await eventually(lambda: len(said()) == 51, what="all of Alice's messages")
            assert said() == [f"n{n}" for n in range(50)] + ["waves"]
            emote = [e for e in events if isinstance(e, Message)][-1]
            assert emote.kind is MessageKind.EMOTE
            assert emote.origin.sender.name == "alice"
            assert alice.bodies(room).count("mine") == 1
            joins = [e for e in events if type(e).__name__ == "Join"]
            assert [j.origin.sender.name for j in joins] == ["alice"]
    finally:
        await alice.close()


async def test_xmpp_start_again_after_aclose_works(prosody: Prosody) -> None:
    """The daemon retries a failed start on the same adapter instance."""
    room = prosody.room("again")
    bob = await XmppUser.login(prosody)
    try:
        async with running(prosody, []) as adapter:
            await adapter.aclose()
            assert not adapter.connected
            await adapter.start(_ignore)
            await adapter.join(room)
            await bob.join(room, "bob")
            await adapter.send(Outgoing(room=room, event=message("again"), txn_id="a1"))
            await eventually(lambda: "again" in bob.bodies(room), what="message after restart")
    finally:
        await bob.close()


async def test_xmpp_wrong_password_is_refused_quickly(prosody: Prosody) -> None:
    jid, _ = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, "wrong"))
    adapter = XmppAdapter("xm", config, DictCursors())
    try:
        async with asyncio.timeout(15):
            with pytest.raises(AdapterError, match="login failed"):
                await adapter.start(_ignore)
    finally:
        await adapter.aclose()


async def test_xmpp_password_protected_room_is_joined_with_its_password(prosody: Prosody) -> None:
    room = prosody.room("secret")
    alice = await XmppUser.login(prosody)
    try:
        await alice.join(room, "alice")
        muc = alice.client.plugin["xep_0045"]
        await muc.get_room_config(slixmpp.JID(room))  # the owner may configure it
        answer = alice.client.plugin["xep_0004"].make_form(ftype="submit")  # type: ignore[no-untyped-call]  # slixmpp
        for var, value in (
            ("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"),
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "s3cret"),
        ):
            answer.add_field(var=var, value=value)
        await muc.set_room_config(slixmpp.JID(room), answer)
        async with running(prosody, [], room_passwords={room: "s3cret"}) as adapter:
            await adapter.join(room)
            assert adapter._rooms[room].joined
            await adapter.send(Outgoing(room=room, event=message("inside"), txn_id="p1"))
            await eventually(lambda: "inside" in alice.bodies(room), what="message in room")
        async with running(prosody, []) as adapter:
            with pytest.raises(AdapterError, match="not-authorized"):
                await adapter.join(room)
    finally:
        await alice.close()


async def test_xmpp_flooded_room_pauses_reading_and_then_relays_everything_in_order(
    prosody: Prosody,
) -> None:
    """While the core cannot keep up (its sink is stalled), a busy room must not fill the
    adapter's memory: past the inbox's high mark the adapter stops reading its socket,
    and the stanzas wait in TCP buffers instead. Once the sink moves again, every message
    reaches it, in order."""
    room = prosody.room("flood")
    alice = await XmppUser.login(prosody)
    bob = await XmppUser.login(prosody)  # sees what the server has sent to every occupant
    total = 3_000
    stalled = asyncio.Event()
    events: list[Event] = []

    async def sink(event: Event) -> None:
        await stalled.wait()
        events.append(event)

    jid, password = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, password))
    adapter = XmppAdapter("xm", config, DictCursors())
    inbox = adapter._session.inbox
    inbox.high, inbox.low = 50, 10
    try:
        await adapter.start(sink)
        await adapter.join(room)
        await bob.join(room, "bob")
        await alice.join(room, "alice")
        for n in range(total):
            alice.say(room, f"f{n}")
        await eventually(lambda: f"f{total - 1}" in bob.bodies(room), timeout=60,
                         what="the whole flood fanned out")  # fmt: skip
        # One read of the socket (up to 256 KiB: a few hundred stanzas) can land past the
        # mark; without back-pressure nearly the whole flood would wait in memory.
        assert inbox.peak < total // 3
        assert inbox.paused
        stalled.set()
        await eventually(lambda: sum(isinstance(e, Message) for e in events) == total,
                         timeout=60, what="every message once the sink moves")  # fmt: skip
        said = [e.text for e in events if isinstance(e, Message)]
        assert said == [f"f{n}" for n in range(total)]
        assert not inbox.paused
    finally:
        stalled.set()
        await adapter.aclose()
        await alice.close()
        await bob.close()
