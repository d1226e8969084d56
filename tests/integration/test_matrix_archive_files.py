"""The acceptance check of issue 15 on a real Synapse: an image posted on Matrix and
relayed by the daemon is exported byte for byte after the original event was redacted
and the media itself deleted on the homeserver (admin API), so nothing of it is left at
the source. Synapse serves media only to logged-in clients (authenticated media), so the
bytes can only have been read with the relay's token, through the adapter."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
import zipfile
from pathlib import Path

import aiohttp
import pytest

from imbridge.adapters.memory import MemoryAdapter
from imbridge.commands.archive import archive_export, archive_verify
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.events import Message
from imbridge.testing import write_secret
from tests.servers.process import free_port
from tests.servers.synapse import SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 97 + b"evidence"


def file_records(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return [
            (str(r[0]), str(r[1]))
            for r in conn.execute(
                "SELECT event_id, action FROM archive_records WHERE kind = 'file'"
            )
        ]


def run(fn: object, *args: object, **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = fn(*args, out=out, err=err, **kw)  # type: ignore[operator]
    return int(code), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("signed_links", [True, False], ids=["signed-links", "plain-links"])
async def test_matrix_image_is_exported_byte_for_byte_after_redaction_and_media_deletion(
    synapse: SynapseServer, tmp_path: Path, signed_links: bool
) -> None:
    relay = synapse.register()
    admin = synapse.register(admin=True)
    port = free_port()
    key = tmp_path / "archive.key"
    write_secret(key, "k" * 44)
    http: dict[str, str] = {}
    if signed_links:
        http = {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}/"}
    async with Watcher(synapse, synapse.register()) as alice:
        room = await alice.create_room(invite=[relay.user_id])
        path = tmp_path / "bridge.yaml"
        path.write_text(json.dumps({
            "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"},
                       "http": http},
            "networks": {
                "mx": {"type": "matrix", "homeserver": synapse.url, "user_id": relay.user_id,
                       "access_token": relay.access_token, "sync_timeout_ms": 1000},
                "mem": {"type": "memory"},
            },
            "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                         {"network": "mem", "room": "#elsewhere"}]}},
            "archive": {"encryption_key_file": str(key)},
        }))  # fmt: skip
        db = tmp_path / "state" / "imbridge.db"
        async with Daemon(load_config(path)) as daemon:
            assert await daemon.ready(30)
            mem = daemon.adapters["mem"]
            assert isinstance(mem, MemoryAdapter)
            mxc = await alice.upload(PNG, "site-plan.png")
            image = {"msgtype": "m.image", "body": "site-plan.png", "url": mxc,
                     "info": {"mimetype": "image/png", "size": len(PNG)}}  # fmt: skip
            event_id = await alice.send(room, image)
            await wait_for(
                lambda: [i for i in mem.sent if isinstance(i.event, Message)],
                timeout=20,
                what="the image relayed to the other network",
            )
            stored = await wait_for(
                lambda: file_records(db), timeout=20, what="the archive's file record"
            )
            assert [action for _, action in stored] == ["stored"]

        # Gone at the source: the event redacted, the media deleted by an admin.
        redacted = await alice.client.room_redact(room, event_id, reason="cover-up")
        assert type(redacted).__name__ == "RoomRedactResponse", redacted
        server, media_id = mxc[len("mxc://") :].split("/")
        await asyncio.to_thread(
            synapse.api, "DELETE", f"/_synapse/admin/v1/media/{server}/{media_id}",
            token=admin.access_token,
        )  # fmt: skip
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{synapse.url}/_matrix/client/v1/media/download/{server}/{media_id}",
                headers={"Authorization": f"Bearer {alice.user.access_token}"},
            ) as resp,
        ):
            assert resp.status == 404  # the homeserver has nothing left

    # No plaintext byte of the image anywhere in the state directory.
    for f in (tmp_path / "state").rglob("*"):
        assert not f.is_file() or b"evidence" not in f.read_bytes(), f

    code, out, err = await asyncio.to_thread(run, archive_verify, path)
    assert code == 0, out + err
    zpath = tmp_path / "case.zip"
    code, out, err = await asyncio.to_thread(run, archive_export, path, fmt="zip", output=zpath)
    assert code == 0, err
    digest = hashlib.sha256(PNG).hexdigest()
    with zipfile.ZipFile(zpath) as zf:
        assert zf.read(f"files/{digest}") == PNG
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["members"][f"files/{digest}"]["sha256"] == digest
        (line,) = [json.loads(x) for x in zf.read("export.jsonl").splitlines()]
    assert line["event"]["origin"]["remote_id"] == event_id
    (entry,) = line["files"]
    assert entry["name"] == "site-plan.png"
    assert entry["sha256"] == digest
    assert entry["status"] == "stored"
