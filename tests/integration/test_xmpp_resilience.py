"""What must survive: hostile text from another network, a Prosody restart in the middle
of a stream, and a bridge restart while people keep talking."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from imbridge import testing
from imbridge.adapter import Outgoing
from imbridge.adapters.memory import MemoryAdapter
from imbridge.adapters.xmpp import XmppAdapter, XmppConfig
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.errors import RetryableSendError
from imbridge.events import Event, Message, Origin, Sender, new_event_id
from imbridge.testing import DictCursors
from tests.servers.prosody import Prosody, XmppUser, eventually

pytestmark = pytest.mark.integration


def body(m: ET.Element) -> str:
    return m.findtext("{jabber:client}body") or ""


def xmpp_network(server: Prosody, jid: str, password: str, **extra: Any) -> dict[str, Any]:
    return testing.xmpp_network(server, jid, password, **{"ack_timeout": 5, **extra})


def config_json(state: Path, networks: dict[str, Any], rooms: list[tuple[str, str]]) -> str:
    return json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning", "format": "console"}},
        "networks": networks,
        "gateways": {"g": {"nick_format": "<{nick}@{network}> ",
                           "rooms": [{"network": n, "room": r} for n, r in rooms]}},
        "archive": {"enabled": False},
    })  # fmt: skip


async def test_xmpp_every_c0_control_and_lone_surrogate_keep_the_relay_connected(
    prosody: Prosody,
) -> None:
    """Raw hostile text straight into `send`, past the core's own cleaning: the stanza
    must still be valid XML, or Prosody would close the stream."""
    jid, password = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, password))
    adapter = XmppAdapter("xm", config, DictCursors())
    bob = await XmppUser.login(prosody)
    room = prosody.room("hostile")
    events: list[Event] = []

    async def sink(event: Event) -> None:
        events.append(event)

    try:
        await adapter.start(sink)
        await adapter.join(room)
        await bob.join(room, "bob")
        generation = adapter._session.generation
        hostile = "".join(chr(c) for c in range(32)) + "still \udcff readable\ufffe\uffff"
        origin = Origin(network="irc", room="#x", sender=Sender(id="m", name="m\u202emallory"))
        for n, text in enumerate([hostile, "after"]):
            event = Message(id=new_event_id(), origin=origin, text=text)
            await adapter.send(Outgoing(room=room, event=event, txn_id=f"t{n}"))
        await eventually(lambda: len(bob.bodies(room)) >= 2, what="both messages")
        first, second = bob.bodies(room)[:2]
        assert "still \ufffd readable" in first
        assert second == "after"
        assert adapter.connected
        assert adapter._session.generation == generation  # the stream was never lost
    finally:
        await adapter.aclose()
        await bob.close()


async def test_xmpp_prosody_restart_mid_stream_loses_and_duplicates_nothing(
    prosody: Prosody, tmp_path: Path
) -> None:
    """A memory network feeds an XMPP room through the daemon's outbox while Prosody is
    restarted (stream resumption then fails: its state lived in the old process)."""
    jid, password = await asyncio.to_thread(prosody.register)
    room = prosody.room("restart")
    networks = {"mem": {"type": "memory"}, "xm": xmpp_network(prosody, jid, password)}
    config = parse_config(config_json(tmp_path, networks, [("mem", "#in"), ("xm", room)]))
    total = 150
    async with Daemon(config) as daemon:
        assert await daemon.ready(30)
        mem, xm = daemon.adapters["mem"], daemon.adapters["xm"]
        assert isinstance(mem, MemoryAdapter)
        assert isinstance(xm, XmppAdapter)
        restart: asyncio.Task[None] | None = None
        for n in range(total):
            mem.hub.post("#in", "carol", f"m{n}")
            if n == total // 3:  # the stream is busy: some stanzas are unacknowledged
                restart = asyncio.create_task(asyncio.to_thread(prosody.restart))
            await asyncio.sleep(0.005)
        assert restart is not None
        await restart
        await eventually(lambda: xm._session.generation >= 2 and xm.connected, timeout=30,
                         what="a new session after the restart")  # fmt: skip
        assert daemon.outbox is not None
        assert await daemon.outbox.wait_idle(30), "outbox did not drain"
    bob = await XmppUser.login(prosody)
    try:
        bodies = [body(m) for m in await bob.archive(room) if body(m).startswith("<carol")]
    finally:
        await bob.close()
    assert bodies == [f"<carol@mem> m{n}" for n in range(total)]


async def test_xmpp_bridge_restart_catches_up_from_history_once(
    prosody: Prosody, tmp_path: Path
) -> None:
    jid, password = await asyncio.to_thread(prosody.register)
    alice = await XmppUser.login(prosody)
    bob = await XmppUser.login(prosody)
    a, b = prosody.room("a"), prosody.room("b")
    networks = {"xm": xmpp_network(prosody, jid, password)}
    config = parse_config(config_json(tmp_path, networks, [("xm", a), ("xm", b)]))

    def relayed() -> list[str]:
        return [body(m) for m in bob.messages if m.get("from") == f"{b}/relay"]

    try:
        await alice.join(a, "alice")
        await bob.join(b, "bob")
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            alice.say(a, "before")
            await eventually(lambda: relayed() == ["<alice@xm> before"], what="first relay")
        for n in range(3):
            alice.say(a, f"while away {n}")  # the bridge is down: only the archive has it
        await eventually(  # the room reflected (and so archived) all three
            lambda: sum(b.startswith("while away") for b in alice.bodies(a)) == 3,
            what="the room's copies",
        )
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            expected = ["<alice@xm> before"] + [f"<alice@xm> while away {n}" for n in range(3)]
            await eventually(lambda: relayed() == expected, what="catch-up")
            alice.say(a, "live again")
            await eventually(lambda: len(relayed()) == 5, what="live after catch-up")
            alice.say(a, "sentinel")  # a late duplicate of the catch-up would land before it
            await eventually(lambda: len(relayed()) >= 6, what="the sentinel")
        assert relayed() == [*expected, "<alice@xm> live again", "<alice@xm> sentinel"]
    finally:
        await alice.close()
        await bob.close()


async def test_xmpp_send_while_offline_is_retryable_not_dropped(prosody: Prosody) -> None:
    jid, password = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, password))
    adapter = XmppAdapter("xm", config, DictCursors())
    event = Message(id=new_event_id(), origin=Origin(network="n", room="r",
                    sender=Sender(id="s", name="s")), text="x")  # fmt: skip
    with pytest.raises(RetryableSendError):
        await adapter.send(Outgoing(room="r@conference.localhost", event=event, txn_id="t"))
    await adapter.aclose()


async def test_xmpp_restart_catches_up_a_room_where_nobody_had_spoken(prosody: Prosody) -> None:
    jid, password = await asyncio.to_thread(prosody.register)
    config = XmppConfig.model_validate(xmpp_network(prosody, jid, password))
    cursors = DictCursors()  # the state database, kept across the two runs
    room = prosody.room("quiet")
    alice = await XmppUser.login(prosody)
    events: list[Event] = []

    async def sink(event: Event) -> None:
        events.append(event)

    try:
        first = XmppAdapter("xm", config, cursors)
        await first.start(sink)
        await first.join(room)
        await first.aclose()
        await alice.join(room, "alice")
        alice.say(room, "anyone here?")
        await eventually(lambda: alice.bodies(room) == ["anyone here?"], what="the room's copy")
        second = XmppAdapter("xm", config, cursors)
        try:
            await second.start(sink)
            await second.join(room)
            await eventually(lambda: any(isinstance(e, Message) for e in events), what="catch-up")
        finally:
            await second.aclose()
        assert [e.text for e in events if isinstance(e, Message)] == ["anyone here?"]
    finally:
        await alice.close()


async def test_xmpp_correction_after_bridge_restart_still_corrects_the_copy(
    prosody: Prosody, tmp_path: Path
) -> None:
    jid, password = await asyncio.to_thread(prosody.register)
    alice = await XmppUser.login(prosody)
    bob = await XmppUser.login(prosody)
    a, b = prosody.room("a"), prosody.room("b")
    config = parse_config(
        config_json(tmp_path, {"xm": xmpp_network(prosody, jid, password)}, [("xm", a), ("xm", b)])
    )

    def relayed() -> list[ET.Element]:
        return [m for m in bob.messages if m.get("from") == f"{b}/relay"]

    try:
        await alice.join(a, "alice")
        await bob.join(b, "bob")
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            first = alice.say(a, "helo")
            await eventually(relayed, what="first relay")
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            alice.say(a, "hello", replace=first)
            await eventually(lambda: len(relayed()) == 2, what="correction")
        replace = relayed()[1].find("{urn:xmpp:message-correct:0}replace")
        assert replace is not None  # a correction of the copy, not a new message
        assert replace.get("id") == relayed()[0].get("id")
    finally:
        await alice.close()
        await bob.close()
