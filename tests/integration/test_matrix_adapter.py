"""The Matrix adapter on its own against a real Synapse: what a Matrix user sends reaches
the sink as core events, what the core sends appears to Matrix users, and restarts
neither lose nor repeat anything. Matrix users are real matrix-nio clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from imbridge.adapter import Outgoing
from imbridge.adapters.matrix import MatrixAdapter, MatrixConfig
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    EventId,
    Message,
    MessageKind,
    Origin,
    RemoteId,
    RichText,
    Sender,
    new_event_id,
)
from tests.servers.synapse import DictCursors, MatrixUser, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


class Sink:
    """Stands in for the core's sink: keeps events and fills the id map as the core
    would, so duplicates and targets resolve as they do in the daemon."""

    def __init__(self, cursors: DictCursors) -> None:
        self.events: list[Event] = []
        self.cursors = cursors

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.origin.remote_id:
            self.cursors.ids[event.origin.remote_id] = event.id

    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]


def make_adapter(server: SynapseServer, user: MatrixUser, cursors: DictCursors) -> MatrixAdapter:
    config = MatrixConfig.model_validate(
        {
            "type": "matrix",
            "homeserver": server.url,
            "user_id": user.user_id,
            "access_token": user.access_token,
            "sync_timeout_ms": 1000,
        }
    )
    return MatrixAdapter("mx", config, cursors)


def outgoing(room: str, text: str, *, rich: str | None = None, **kw: object) -> Outgoing:
    origin = Origin(network="elsewhere", room="#x", sender=Sender(id="carol", name="carol"))
    event = Message(
        id=new_event_id(), origin=origin, text=text, rich=RichText(rich) if rich else None
    )
    return Outgoing(room=room, event=event, txn_id=f"t-{event.id}", **kw)  # type: ignore[arg-type]


@pytest.fixture
async def alice(synapse: SynapseServer) -> AsyncIterator[Watcher]:
    async with Watcher(synapse, synapse.register()) as w:
        yield w


async def test_matrix_first_start_relays_new_messages_but_no_history(
    synapse: SynapseServer, alice: Watcher
) -> None:
    relay = synapse.register()
    room = await alice.create_room(invite=[relay.user_id])
    await alice.text(room, "old history, before the bridge")
    cursors = DictCursors()
    sink = Sink(cursors)
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(sink)
    try:
        await adapter.join(room)
        await alice.text(
            room,
            "hello *world*",
            format="org.matrix.custom.html",
            formatted_body="hello <b>world</b><script>alert(1)</script>",
        )
        await alice.send(room, {"msgtype": "m.emote", "body": "waves"})
        await alice.send(room, {"msgtype": "m.notice", "body": "a notice"})
        await wait_for(lambda: len(sink.messages()) >= 3, what="three messages")
        msgs = sink.messages()
        assert [m.text for m in msgs] == ["hello *world*", "waves", "a notice"]
        assert [m.kind for m in msgs] == [MessageKind.TEXT, MessageKind.EMOTE, MessageKind.NOTICE]
        assert msgs[0].rich == "hello <b>world</b>"
        assert msgs[0].origin.sender.id == alice.user.user_id
        assert msgs[0].origin.room == room
        assert msgs[0].origin.network == "mx"
        assert not msgs[0].origin.relayed
    finally:
        await adapter.aclose()
        await adapter.aclose()  # safe twice


async def test_matrix_send_carries_html_marker_and_txn_dedup(
    synapse: SynapseServer, alice: Watcher
) -> None:
    relay = synapse.register()
    room = await alice.create_room(invite=[relay.user_id])
    cursors = DictCursors()
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(Sink(cursors))
    try:
        await adapter.join(room)
        item = outgoing(
            room, "<carol> hi", rich='&lt;carol&gt; <b>hi</b> <a href="javascript:x()">l</a>'
        )
        first = await adapter.send(item)
        again = await adapter.send(item)  # a retry after a crash: same txn id
        assert first == again
        # A sentinel sent after the retry: a duplicate would arrive before it.
        await adapter.send(outgoing(room, "sentinel"))
        await wait_for(
            lambda: len(alice.messages(room, sender=relay.user_id)) >= 2, what="the sentinel"
        )
        seen = alice.messages(room, sender=relay.user_id)
        assert [m["content"]["body"] for m in seen] == ["<carol> hi", "sentinel"]
        content = seen[0]["content"]
        assert content["body"] == "<carol> hi"
        assert "javascript" not in content["formatted_body"]
        assert "<b>hi</b>" in content["formatted_body"]
        assert content["org.imbridge.relay"]["network"] == "elsewhere"
    finally:
        await adapter.aclose()


async def test_matrix_edit_redaction_reply_in_both_directions(
    synapse: SynapseServer, alice: Watcher
) -> None:
    relay = synapse.register()
    room = await alice.create_room(invite=[relay.user_id])
    cursors = DictCursors()
    sink = Sink(cursors)
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(sink)
    try:
        await adapter.join(room)
        original = await alice.text(room, "typo")
        await alice.send(
            room,
            {
                "msgtype": "m.text",
                "body": "* fixed",
                "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            },
        )
        await alice.send(
            room,
            {
                "msgtype": "m.text",
                "body": "> <@x:localhost> secret quote\n\nmy answer",
                "format": "org.matrix.custom.html",
                "formatted_body": (
                    "<mx-reply><blockquote>secret quote</blockquote></mx-reply>my answer"
                ),
                "m.relates_to": {"m.in_reply_to": {"event_id": original}},
            },
        )
        resp = await alice.client.room_redact(room, original)
        assert resp.event_id
        await wait_for(lambda: len(sink.events) >= 4, what="4 events")
        msg, edit, reply, delete = sink.events[:4]
        assert isinstance(msg, Message)
        assert isinstance(edit, Edit)
        assert edit.target == msg.id
        assert edit.text == "fixed"
        assert isinstance(reply, Message)
        assert reply.reply_to == msg.id
        assert reply.text == "my answer"
        assert reply.rich == "my answer"
        assert isinstance(delete, Delete)
        assert delete.target == msg.id

        # Outgoing: an edit and a redaction of the relay's own message, a reply to alice.
        sent = await adapter.send(outgoing(room, "v1"))
        origin = Origin(network="elsewhere", room="#x", sender=Sender(id="c", name="c"))
        fix = Edit(id=new_event_id(), origin=origin, target=EventId("e"), text="v2")
        await adapter.send(Outgoing(room=room, event=fix, target=sent, txn_id="edit-1"))
        await adapter.send(outgoing(room, "re", reply_to=RemoteId(original)))
        gone = Delete(id=new_event_id(), origin=origin, target=EventId("e"))
        await adapter.send(Outgoing(room=room, event=gone, target=sent, txn_id="del-1"))

        def relayed() -> list[dict[str, object]]:
            evs = [
                e
                for e in alice.events.get(room, [])
                if e["sender"] == relay.user_id
                and e["type"] in ("m.room.message", "m.room.redaction")
            ]
            return evs if len(evs) >= 4 else []

        evs = await wait_for(relayed, what="relay's four events")
        assert evs[1]["content"]["m.new_content"]["body"] == "v2"  # type: ignore[index]
        assert evs[1]["content"]["m.relates_to"]["event_id"] == sent  # type: ignore[index]
        assert evs[2]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == original  # type: ignore[index]
        assert evs[3]["type"] == "m.room.redaction"
        assert evs[3]["redacts"] == sent
    finally:
        await adapter.aclose()


async def test_matrix_restart_resumes_without_loss_or_repeat(
    synapse: SynapseServer, alice: Watcher
) -> None:
    relay = synapse.register()
    room = await alice.create_room(invite=[relay.user_id])
    cursors = DictCursors()
    sink = Sink(cursors)
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(sink)
    await adapter.join(room)
    await alice.text(room, "m0")
    await wait_for(sink.messages, what="m0")
    await adapter.aclose()
    for i in range(1, 151):  # more than one sync timeline (100): the gap is back-filled
        await alice.text(room, f"m{i}")
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(sink)
    try:
        await adapter.join(room)
        await alice.text(room, "m151")
        await wait_for(lambda: len(sink.messages()) >= 152, timeout=20, what="152 messages")
        # A trailing sentinel: a late duplicate of any of them would come before it.
        await alice.text(room, "m152")
        await wait_for(lambda: sink.messages()[-1].text == "m152", what="the sentinel")
        assert [m.text for m in sink.messages()] == [f"m{i}" for i in range(153)]
    finally:
        await adapter.aclose()


async def test_matrix_send_while_offline_is_retryable(synapse: SynapseServer) -> None:
    relay = synapse.register()
    adapter = make_adapter(synapse, relay, DictCursors())
    with pytest.raises(RetryableSendError):
        await adapter.send(outgoing("!nowhere", "x"))
    await adapter.aclose()


async def test_matrix_encrypted_room_is_announced_and_never_relayed(
    synapse: SynapseServer, alice: Watcher
) -> None:
    relay = synapse.register()
    room = await alice.create_room(
        invite=[relay.user_id],
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    plain = await alice.create_room(invite=[relay.user_id])
    cursors = DictCursors()
    sink = Sink(cursors)
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(sink)
    try:
        await adapter.join(room)
        await adapter.join(plain)
        resp = await alice.client.room_send(
            room,
            "m.room.encrypted",
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEnAC…",
                "sender_key": "x",
                "device_id": "D",
                "session_id": "s",
            },
        )
        assert resp.event_id
        await alice.text(room, "plaintext in an encrypted room")
        notice = await wait_for(lambda: alice.messages(room, sender=relay.user_id), what="notice")
        assert notice[0]["content"]["msgtype"] == "m.notice"
        assert "encrypted" in notice[0]["content"]["body"]
        with pytest.raises(PermanentSendError):
            await adapter.send(outgoing(room, "must not go in"))
        # Trailing sentinels instead of a pause: the relay reads the rooms in order, so
        # once it has relayed a line said later in a plain room, it has passed over the
        # encrypted room's events (and said what it had to say there); once Alice sees
        # her own later line in the encrypted room, she has seen whatever it said.
        await alice.text(plain, "sentinel")
        await wait_for(sink.messages, what="the sentinel from the plain room")
        await alice.text(room, "checked")
        await wait_for(lambda: "checked" in alice.bodies(room), what="Alice's own line")
        assert [(e.origin.room, e.text) for e in sink.messages()] == [(plain, "sentinel")]
        assert [e for e in sink.events if e.origin.room == room] == []
        assert len(alice.messages(room, sender=relay.user_id)) == 1  # said once
    finally:
        await adapter.aclose()


async def test_matrix_invite_only_room_is_joined_on_invite(
    synapse: SynapseServer, alice: Watcher
) -> None:
    relay = synapse.register()
    room = await alice.create_room()  # private: invite only, relay not invited yet
    cursors = DictCursors()
    sink = Sink(cursors)
    adapter = make_adapter(synapse, relay, cursors)
    await adapter.start(sink)
    try:
        await adapter.join(room)
        assert not sink.events
        await alice.client.room_invite(room, relay.user_id)
        await wait_for(
            lambda: any(
                e["type"] == "m.room.member"
                and e["state_key"] == relay.user_id
                and e["content"]["membership"] == "join"
                for e in alice.events.get(room, [])
            ),
            what="relay joins",
        )
        await alice.text(room, "welcome")
        await wait_for(sink.messages, what="message after invite")
        assert [m.text for m in sink.messages()] == ["welcome"]
    finally:
        await adapter.aclose()


async def test_matrix_password_login_keeps_one_device_across_restarts(
    synapse: SynapseServer,
) -> None:
    relay = synapse.register()
    config = MatrixConfig.model_validate(
        {
            "type": "matrix",
            "homeserver": synapse.url,
            "user_id": relay.user_id,
            "password": relay.password,
            "sync_timeout_ms": 1000,
        }
    )
    cursors = DictCursors()
    for _ in range(2):
        adapter = MatrixAdapter("mx", config, cursors)
        await adapter.start(Sink(cursors))
        await adapter.aclose()
    devices = synapse.api(
        "GET", "/_matrix/client/v3/devices", token=cursors.values["access_token"]
    )["devices"]
    assert len([d for d in devices if d.get("display_name") == "imbridge"]) == 1


async def test_matrix_upload_mode_reuploads_files_within_the_cap(
    synapse: SynapseServer, alice: Watcher
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 2000
    app = web.Application()

    async def cat_png(_request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def big_bin(_request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 5000, content_type="application/octet-stream")

    app.router.add_get("/cat.png", cat_png)
    app.router.add_get("/big.bin", big_bin)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    relay = synapse.register()
    room = await alice.create_room(invite=[relay.user_id])
    config = MatrixConfig.model_validate(
        {
            "type": "matrix",
            "homeserver": synapse.url,
            "user_id": relay.user_id,
            "access_token": relay.access_token,
            "sync_timeout_ms": 1000,
            "media": "upload",
            "media_max_bytes": 4096,
            "media_allow_origins": [f"http://127.0.0.1:{port}"],
        }
    )
    cursors = DictCursors()
    adapter = MatrixAdapter("mx", config, cursors)
    await adapter.start(Sink(cursors))
    try:
        await adapter.join(room)
        origin = Origin(network="xmpp", room="r@muc", sender=Sender(id="c", name="c"))
        cat = Attachment(url=f"http://127.0.0.1:{port}/cat.png", name="cat.png")
        msg = Message(id=new_event_id(), origin=origin, text="<c> look", attachments=(cat,))
        await adapter.send(Outgoing(room=room, event=msg, txn_id="media-1"))
        await wait_for(lambda: len(alice.messages(room, sender=relay.user_id)) >= 2, what="2")
        text, image = alice.messages(room, sender=relay.user_id)
        assert text["content"]["body"] == "<c> look"
        assert image["content"]["msgtype"] == "m.image"
        assert image["content"]["url"].startswith("mxc://")
        assert image["content"]["info"] == {"mimetype": "image/png", "size": len(png)}
        big = Attachment(url=f"http://127.0.0.1:{port}/big.bin", name="big.bin")
        too_big = Message(id=new_event_id(), origin=origin, text="", attachments=(big,))
        with pytest.raises(PermanentSendError, match="4096"):
            await adapter.send(Outgoing(room=room, event=too_big, txn_id="media-2"))
    finally:
        await adapter.aclose()
        await runner.cleanup()
