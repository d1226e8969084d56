"""Attachments from other networks re-uploaded to Prosody's HTTP File Upload service
(XEP-0363, mod_http_file_share), watched by an ordinary user who opens what arrives; and
every way an upload can fail, which must still deliver the message with its link."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from imbridge.adapter import Outgoing
from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from imbridge.events import Attachment, Message, Origin, Sender, new_event_id
from tests.integration.filehost import fetch, serving
from tests.integration.test_xmpp_adapter import running
from tests.servers.process import free_port
from tests.servers.prosody import UPLOAD_LIMIT, Prosody, XmppUser, eventually
from tests.servers.synapse import SynapseServer, Watcher

pytestmark = pytest.mark.integration

NS_OOB = "{jabber:x:oob}"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def with_files(text: str, *attachments: Attachment, network: str = "matrix") -> Message:
    origin = Origin(network=network, room="!r", sender=Sender(id="@carol:hs", name="carol"))
    return Message(id=new_event_id(), origin=origin, text=text, attachments=attachments)


def oob_url(message: ET.Element) -> str:
    return message.findtext(f"{NS_OOB}x/{NS_OOB}url") or ""


def body(message: ET.Element) -> str:
    return message.findtext("{jabber:client}body") or ""


async def test_xmpp_attachment_from_elsewhere_arrives_as_an_upload_on_the_xmpp_server(
    prosody: Prosody,
) -> None:
    room = prosody.room("upload")
    bob = await XmppUser.login(prosody)
    try:
        await bob.join(room, "bob")
        async with serving({"cat.png": (PNG, "image/png")}) as files, running(
            prosody, [], media_allow_origins=[files.origin]
        ) as adapter:  # fmt: skip
            await adapter.join(room)
            original = files.url("cat.png")
            cat = Attachment(url=original, name="cat.png", mimetype="image/png", size=len(PNG))
            await adapter.send(Outgoing(room=room, event=with_files("", cat), txn_id="up1"))
            await eventually(lambda: bob.bodies(room), what="the message with the file")
            (got,) = [m for m in bob.messages if body(m)]
            url = oob_url(got)
            assert url.startswith(f"{prosody.http_url}/file_share/")  # Prosody serves it
            assert url.endswith("/cat.png")
            assert original not in body(got)
            assert url in body(got)  # plain clients show the link
            assert await fetch(url) == (200, PNG)
            assert files.requested == ["cat.png"]  # downloaded once
    finally:
        await bob.close()


async def test_xmpp_attachment_that_cannot_be_uploaded_goes_as_its_original_link(
    prosody: Prosody,
) -> None:
    """Too large (by the service's limit, announced or found while downloading), gone at
    its source, not a web link: each message still arrives, in the order sent, with the
    original URL, and one good file in the same message is still uploaded."""
    room = prosody.room("fallback")
    bob = await XmppUser.login(prosody)
    big = b"\0" * (UPLOAD_LIMIT + 1)
    try:
        await bob.join(room, "bob")
        async with serving({"big.bin": (big, "application/octet-stream"),
                            "ok.txt": (b"fine", "text/plain")}) as files, running(
            prosody, [], media_allow_origins=[files.origin]
        ) as adapter:  # fmt: skip
            await adapter.join(room)
            announced = Attachment(url=files.url("big.bin"), name="big.bin", size=len(big))
            unknown = Attachment(url=files.url("big.bin"), name="big.bin")  # size not given
            gone = Attachment(url=files.url("gone.png"), name="gone.png")
            mxc = Attachment(url="mxc://hs/abc", name="abc.png")
            ok = Attachment(url=files.url("ok.txt"), name="ok.txt")
            sent = [with_files("a", announced), with_files("b", unknown),
                    with_files("c", gone), with_files("d", mxc, ok)]  # fmt: skip
            for n, event in enumerate(sent):
                await adapter.send(Outgoing(room=room, event=event, txn_id=f"fb{n}"))
            await eventually(lambda: len(bob.bodies(room)) == 4, what="all four messages")
            a, b, c, d = [m for m in bob.messages if body(m)]
            assert body(a) == f"a\n{files.url('big.bin')}"
            assert oob_url(a) == files.url("big.bin")
            assert oob_url(b) == files.url("big.bin")
            assert oob_url(c) == files.url("gone.png")
            assert oob_url(d) == "mxc://hs/abc"
            uploaded = body(d).splitlines()[-1]
            assert uploaded.startswith(f"{prosody.http_url}/file_share/")
            assert await fetch(uploaded) == (200, b"fine")
            assert files.requested.count("big.bin") == 1  # announced too large: not fetched
    finally:
        await bob.close()


async def test_xmpp_link_mode_no_service_and_attachments_of_this_network_keep_their_link(
    prosody: Prosody,
) -> None:
    room = prosody.room("links")
    bob = await XmppUser.login(prosody)
    try:
        await bob.join(room, "bob")
        async with serving({"cat.png": (PNG, "image/png")}) as files:
            cat = Attachment(url=files.url("cat.png"), name="cat.png")
            async with running(prosody, [], media="link") as adapter:
                await adapter.join(room)
                await adapter.send(Outgoing(room=room, event=with_files("", cat), txn_id="l1"))
            async with running(prosody, [], media_allow_origins=[files.origin]) as adapter:
                await adapter.join(room)
                local = with_files("", cat, network="xm")  # from another room of this network
                await adapter.send(Outgoing(room=room, event=local, txn_id="l2"))
            # A service that is not an upload service (the MUC): no upload, the link.
            async with running(prosody, [], upload_service=prosody.muc_domain) as adapter:
                await adapter.join(room)
                await adapter.send(Outgoing(room=room, event=with_files("", cat), txn_id="l3"))
            await eventually(lambda: len(bob.bodies(room)) == 3, what="all three messages")
            assert [oob_url(m) for m in bob.messages if body(m)] == [files.url("cat.png")] * 3
            assert files.requested == []
    finally:
        await bob.close()


async def test_xmpp_message_sent_after_an_attachment_waits_for_its_upload(
    prosody: Prosody,
) -> None:
    """Sends to one room may be in flight together; a slow download must not let the
    next message overtake the one with the file."""
    room, other = prosody.room("order"), prosody.room("elsewhere")
    bob = await XmppUser.login(prosody)
    try:
        await bob.join(room, "bob")
        await bob.join(other, "bob")
        async with serving({"slow.png": (PNG, "image/png")}) as files, running(
            prosody, [], media_allow_origins=[files.origin]
        ) as adapter:  # fmt: skip
            await adapter.join(room)
            await adapter.join(other)
            release = files.held["slow.png"] = asyncio.Event()
            slow = Attachment(url=files.url("slow.png"), name="slow.png")
            first = asyncio.create_task(
                adapter.send(Outgoing(room=room, event=with_files("1", slow), txn_id="o1"))
            )
            await eventually(lambda: files.requested, what="the download to start")
            second = asyncio.create_task(
                adapter.send(Outgoing(room=room, event=with_files("2"), txn_id="o2"))
            )
            # A sentinel instead of a pause: a message to another room, sent after the
            # second on the same stream. Had the second not waited, Bob would have it
            # before the sentinel.
            await adapter.send(Outgoing(room=other, event=with_files("sentinel"), txn_id="o3"))
            await eventually(lambda: bob.bodies(other) == ["sentinel"], what="the sentinel")
            assert not second.done()
            assert bob.bodies(room) == []
            release.set()
            await asyncio.gather(first, second)
            await eventually(lambda: len(bob.bodies(room)) == 2, what="both messages")
            one, two = bob.bodies(room)
            assert one.startswith("1\n")
            assert "/file_share/" in one
            assert two == "2"
    finally:
        await bob.close()


async def test_xmpp_image_posted_on_matrix_arrives_as_an_upload_on_the_xmpp_server(
    synapse: SynapseServer, prosody: Prosody, tmp_path: Path
) -> None:
    """The whole way: Alice posts an image in a Matrix room; Xavier, in the bridged MUC,
    gets a link to the XMPP server's own copy of it."""
    relay_mx = synapse.register()
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    muc = prosody.room("from-matrix")
    xavier = await XmppUser.login(prosody)
    try:
        await xavier.join(muc, "xavier")
        async with Watcher(synapse, synapse.register("alice" + relay_mx.user_id[2:8])) as alice:
            room = await alice.create_room(invite=[relay_mx.user_id])
            # Synapse serves media only to logged-in clients (authenticated media): the
            # XMPP adapter downloads the image through the bridge's signed link.
            port = free_port()
            config = parse_config(json.dumps({
                "bridge": {"state_dir": str(tmp_path), "log": {"level": "warning"},
                           "http": {"listen": f"127.0.0.1:{port}",
                                    "public_url": f"http://127.0.0.1:{port}/"}},
                "networks": {
                    "mx": {"type": "matrix", "homeserver": synapse.url,
                           "user_id": relay_mx.user_id, "access_token": relay_mx.access_token,
                           "sync_timeout_ms": 1000},
                    "xm": {"type": "xmpp", "jid": relay_jid, "password": relay_pw,
                           "host": prosody.host, "port": prosody.port, "tls": "plain",
                           "nick": "relay",
                           # The bridge's own media links are on loopback here.
                           "media_allow_origins": [f"http://127.0.0.1:{port}"]},
                },
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "xm", "room": muc}]}},
                "archive": {"enabled": False},
            }))  # fmt: skip
            async with Daemon(config) as daemon:
                assert await daemon.ready(30)
                mxc = await alice.upload(PNG, "map.png")
                info = {"mimetype": "image/png", "size": len(PNG)}
                image = {"msgtype": "m.image", "body": "map.png", "url": mxc}
                await alice.send(room, {**image, "info": info})

                def relayed() -> list[ET.Element]:
                    return [m for m in xavier.messages
                            if m.get("from") == f"{muc}/relay" and oob_url(m)]  # fmt: skip

                await eventually(relayed, timeout=20, what="the image in the MUC")
                url = oob_url(relayed()[0])
                assert url.startswith(f"{prosody.http_url}/file_share/")
                assert url.endswith("/map.png")
                assert url in body(relayed()[0])
                assert await fetch(url) == (200, PNG)
    finally:
        await xavier.close()
