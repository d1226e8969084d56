"""Attachment bytes kept with the archive and carried by its exports, as an auditor
checks them: every attachment ends as one chained `file` record (stored, too large or
failed), the exported bytes are the posted ones (zip manifest, eml parts, jsonl files/),
retention takes the files with their records and a legal hold keeps them.

The origin network here is a small `AttachmentSource` serving bytes from memory, the
role the Matrix adapter plays for authenticated media; the plain-HTTP path and its
address guard are covered in tests/integration/test_archive_attachments.py."""

from __future__ import annotations

import asyncio
import email
import hashlib
import importlib
import io
import json
import os
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapter import Media, MediaGone, MediaUnavailable
from imbridge.archive.capture import MAX_ATTEMPTS, AttachmentCapture
from imbridge.archive.files import FILES_DIR, FileStore
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config import load_config
from imbridge.db import DB_NAME, Database
from imbridge.events import Attachment, EventId, Message, Origin, Sender
from imbridge.testing import write_secret

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300
PDF = b"%PDF-1.7 quarterly figures " * 100
DAY_US = 86_400 * 1_000_000

CONFIG = """
bridge: {{state_dir: "{state}"}}
networks:
  src: {{type: memory}}
archive:
  retention_days: 30
  legal_hold: [{{name: case-9, user: carol}}]
  attachments: {{max_bytes: 100000}}
{extra}
"""


def run_command(name: str, *args: object, **kw: object) -> tuple[int, str, str]:
    fn = getattr(importlib.import_module("imbridge.commands.archive"), name)
    out, err = io.StringIO(), io.StringIO()
    code = fn(*args, out=out, err=err, **kw)
    return int(code), out.getvalue(), err.getvalue()


async def call(name: str, *args: object, **kw: object) -> tuple[int, str, str]:
    """The command as the CLI runs it (its own event loop, so in a thread here)."""
    return await asyncio.to_thread(run_command, name, *args, **kw)


class Source:
    """An origin network that opens its own attachments (`test://name`)."""

    def __init__(self, files: dict[str, bytes], *, flaky: int = 0) -> None:
        self.files = files
        self.flaky = flaky
        self.opened: list[str] = []

    def open_attachment(self, attachment: Attachment) -> AbstractAsyncContextManager[Media] | None:
        if not attachment.url.startswith("test://"):
            return None
        return self._open(attachment.url[len("test://") :])

    @asynccontextmanager
    async def _open(self, name: str) -> AsyncIterator[Media]:
        self.opened.append(name)
        if self.flaky:
            self.flaky -= 1
            raise MediaUnavailable("homeserver unreachable")
        if name not in self.files:
            raise MediaGone("M_NOT_FOUND")
        data = self.files[name]

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        yield Media(mimetype="application/x-served", size=None, chunks=chunks())


def message(sender: str, *attachments: Attachment, text: str = "") -> Message:
    return Message(
        id=EventId(f"ev-{sender}-{len(attachments)}-{text or 'x'}"),
        origin=Origin(network="src", room="#deals", sender=Sender(id=sender, name=sender)),
        text=text,
        attachments=attachments,
    )


IMAGE = Attachment(url="test://map.png", name="map.png", mimetype="image/png")
REPORT = Attachment(url="test://q3.pdf", name="q3.pdf", mimetype="application/pdf")


class World:
    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        self.tmp = tmp_path
        self.config_path = tmp_path / "bridge.yaml"
        self.config_path.write_text(CONFIG.format(state=tmp_path / "state", extra=extra))
        self.config = load_config(self.config_path)
        self.state = self.config.bridge.state_dir
        self.now = time.time_ns() // 1000
        self.store = ArchiveStore(self.config.archive, state_dir=self.state, clock=self.clock)
        self.files = FileStore.for_archive(self.config.archive, self.state)
        self.source = Source({"map.png": PNG, "q3.pdf": PDF, "huge.bin": b"x" * 200_000})

    def clock(self) -> int:
        return self.now

    @asynccontextmanager
    async def db(self) -> AsyncIterator[Database]:
        async with Database(self.state / DB_NAME, {"archive": ARCHIVE_MIGRATIONS}) as db:
            yield db

    async def record(self, db: Database, *events: Message) -> None:
        for e in events:
            await db.transact(lambda conn, e=e: self.store.record_event(conn, e, []))  # type: ignore[misc]

    def capture(self, db: Database) -> AttachmentCapture:
        return AttachmentCapture(db, self.store, self.files, {"src": self.source}, clock=self.clock)

    async def drain(self, db: Database) -> None:
        capture = self.capture(db)
        while await capture.run_once():
            pass
        await db.read(lambda conn: self.store.checkpoint(conn, force=True))

    async def export_jsonl(self) -> list[dict[str, Any]]:
        out = self.tmp / "export" / "all.jsonl"
        out.parent.mkdir(exist_ok=True)
        code, _, err = await call("archive_export", self.config_path, fmt="jsonl", output=out)
        assert code == 0, err
        return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_every_attachment_ends_as_one_file_record(world: World) -> None:
    huge = Attachment(url="test://huge.bin", name="huge.bin")
    announced = Attachment(url="test://map.png", name="big.png", size=10**9)
    gone = Attachment(url="test://deleted.png", name="deleted.png")
    internal = Attachment(url="http://127.0.0.1:9/admin", name="admin")
    async with world.db() as db:
        await world.record(db, message("alice", IMAGE, huge, announced, gone, internal))
        await world.drain(db)
    (line,) = await world.export_jsonl()
    by_index = {f["index"]: f for f in line["files"]}
    assert by_index[0]["status"] == "stored"
    assert by_index[0]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert by_index[0]["size"] == len(PNG)
    assert by_index[0]["name"] == "map.png"
    assert by_index[1]["status"] == "too_large"
    assert by_index[2]["status"] == "too_large"
    assert "announced" in by_index[2]["reason"]
    assert by_index[3]["status"] == "failed: M_NOT_FOUND"
    assert by_index[4]["status"].startswith("failed: ")
    assert "not a public address" in by_index[4]["status"]
    assert "announced" not in world.source.opened  # an announced oversize is never fetched
    assert world.source.opened.count("map.png") == 1
    code, out, _ = await call("archive_verify", world.config_path)
    assert code == 0, out


async def test_a_fetch_that_keeps_failing_is_recorded_failed_not_retried_forever(
    world: World,
) -> None:
    world.source.flaky = 100
    async with world.db() as db:
        await world.record(db, message("alice", IMAGE))
        capture = world.capture(db)
        for _ in range(MAX_ATTEMPTS):
            assert await capture.run_once() == 1
            world.now += 2 * 3600 * 1_000_000  # past any backoff
        assert await capture.run_once() == 0
    (line,) = await world.export_jsonl()
    (entry,) = line["files"]
    assert entry["status"].startswith("failed: homeserver unreachable")
    assert world.source.opened == ["map.png"] * MAX_ATTEMPTS


async def test_what_is_still_to_fetch_survives_a_restart(world: World) -> None:
    world.source.flaky = 1
    async with world.db() as db:
        await world.record(db, message("alice", IMAGE, REPORT))
        capture = world.capture(db)
        await capture.run_once()  # both tried; the first failed once, will be retried
    world.now += 3600 * 1_000_000
    async with world.db() as db:  # a new daemon on the same state
        await world.drain(db)
    (line,) = await world.export_jsonl()
    assert sorted(f["status"] for f in line["files"]) == ["stored", "stored"]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_zip_export_carries_the_files_and_a_manifest_of_their_digests(
    tmp_path: Path, encrypted: bool
) -> None:
    extra = ""
    if encrypted:
        key = tmp_path / "archive.key"
        write_secret(key, "k" * 44)
        extra = f"  encryption_key_file: {key}"
    world = World(tmp_path, extra)
    async with world.db() as db:
        await world.record(
            db, message("alice", IMAGE, REPORT, text="figures"), message("bob", IMAGE)
        )
        await world.drain(db)
    if encrypted:
        for path in (world.state / FILES_DIR).rglob("*"):
            assert not path.is_file() or b"quarterly" not in path.read_bytes()
    out = tmp_path / "case.zip"
    code, _, err = await call("archive_export", world.config_path, fmt="zip", output=out)
    assert code == 0, err
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        members = manifest["members"]
        assert set(members) == {
            "export.jsonl",
            f"files/{hashlib.sha256(PNG).hexdigest()}",
            f"files/{hashlib.sha256(PDF).hexdigest()}",
        }
        for name, meta in members.items():
            data = zf.read(name)
            assert hashlib.sha256(data).hexdigest() == meta["sha256"], name
            assert len(data) == meta["size"]
        lines = [json.loads(x) for x in zf.read("export.jsonl").splitlines()]
        for line in lines:
            for f in line["files"]:
                assert zf.read(f["file"]) == {"map.png": PNG, "q3.pdf": PDF}[f["name"]]
    assert manifest["records"] == 2


async def test_jsonl_export_puts_the_files_beside_it(world: World) -> None:
    async with world.db() as db:
        await world.record(db, message("alice", IMAGE, text="the map"))
        await world.drain(db)
    (line,) = await world.export_jsonl()
    (entry,) = line["files"]
    assert (world.tmp / "export" / entry["file"]).read_bytes() == PNG
    assert entry["file"] == f"files/{hashlib.sha256(PNG).hexdigest()}"


def attachments_of(mail: EmailMessage) -> Iterator[EmailMessage]:
    return mail.iter_attachments()


async def test_eml_export_has_the_bytes_as_mime_parts(world: World) -> None:
    async with world.db() as db:
        await world.record(db, message("alice", IMAGE, REPORT, text="both files"))
        await world.drain(db)
    outdir = world.tmp / "eml"
    code, _, err = await call("archive_export", world.config_path, fmt="eml", output=outdir)
    assert code == 0, err
    (path,) = outdir.glob("*.eml")
    mail = email.message_from_bytes(path.read_bytes(), policy=default_policy)
    parts = {p.get_filename(): p for p in attachments_of(mail)}
    assert parts["map.png"].get_content_type() == "image/png"
    assert parts["map.png"].get_payload(decode=True) == PNG
    assert parts["q3.pdf"].get_payload(decode=True) == PDF
    assert parts["q3.pdf"]["X-Imbridge-Sha256"].strip() == hashlib.sha256(PDF).hexdigest()


async def test_a_file_altered_on_disk_is_left_out_of_the_export_and_named(world: World) -> None:
    async with world.db() as db:
        await world.record(db, message("alice", IMAGE))
        await world.drain(db)
    (stored,) = world.files.ids()
    world.files.path(stored).write_bytes(b"a forgery")
    code, _, err = await call(
        "archive_export", world.config_path, fmt="zip", output=world.tmp / "x.zip"
    )
    assert code == 1
    assert "does not match its digest" in err
    with zipfile.ZipFile(world.tmp / "x.zip") as zf:
        assert not [n for n in zf.namelist() if n.startswith("files/")]


async def test_retention_purges_files_with_their_records_but_not_held_or_shared(
    world: World,
) -> None:
    async with world.db() as db:
        world.now -= 60 * DAY_US  # two months ago
        await world.record(
            db,
            message("alice", REPORT),  # only purged records use it: goes
            message("bob", IMAGE),  # shared with a recent message: stays
            message("carol", Attachment(url="test://huge.bin", name="h", size=None)),
        )
        world.source.files["held.bin"] = b"under legal hold"
        await world.record(db, message("carol", Attachment(url="test://held.bin", name="held")))
        await world.drain(db)
        world.now += 60 * DAY_US
        await world.record(db, message("dave", IMAGE, text="again"))
        await world.drain(db)
    assert len(list(world.files.ids())) == 3
    # The purge as the CLI runs it, at today's date (the files are older than the grace).
    for f in world.files.ids():
        os.utime(world.files.path(f), (1, 1))
    code, out, err = await call("archive_purge", world.config_path)
    assert code == 0, err
    left = set(world.files.ids())
    assert left == {
        world.files.file_id(hashlib.sha256(PNG).hexdigest()),
        world.files.file_id(hashlib.sha256(b"under legal hold").hexdigest()),
    }
    code, out, _ = await call("archive_verify", world.config_path)
    assert code == 0, out
