"""Rotating the archive key: a new key is prepended to `archive.encryption_key_file`, the
old one stays as a retired line, and everything the old key sealed (records, search
tokens, relay rows, stored attachments) stays readable, searchable and verifiable while
everything new is sealed under the new key."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from imbridge.archive.crypto import ArchiveKeyError, Cipher, key_id_of
from imbridge.archive.files import MAGIC, FileStore
from imbridge.archive.keyring import Keyring, derive
from imbridge.archive.keyuse import key_usage
from imbridge.archive.sealing import Sealer, SealError
from imbridge.archive.search import Query, search
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config import load_config
from imbridge.config.schema import Archive
from imbridge.errors import ConfigError
from imbridge.events import EventId, Message, Origin, Sender
from imbridge.policy import Action, Decision, Destination
from imbridge.testing import sqlite_schema, write_secret

OLD = "o" * 40
NEW = "n" * 40
ROTATED = f"{NEW}\n{OLD}\n"


def message(i: int, text: str) -> Message:
    return Message(
        id=EventId(f"ev{i}"),
        origin=Origin(network="corp", room="#ops", sender=Sender(id="alice", name="alice")),
        text=text,
    )


def open_archive(tmp_path: Path, keys: str) -> tuple[ArchiveStore, sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        sqlite_schema(conn, ARCHIVE_MIGRATIONS)
    store = ArchiveStore(Archive(encryption_key=SecretStr(keys)), state_dir=tmp_path)
    return store, conn


def record(store: ArchiveStore, conn: sqlite3.Connection, i: int, text: str) -> None:
    allow = Decision(action=Action.ALLOW, rule="default")
    store.record_event(conn, message(i, text), [(Destination("partner", "#p"), allow)])
    store.index_pending(conn)
    store.checkpoint(conn)


def texts_found(store: ArchiveStore, conn: sqlite3.Connection, words: str) -> list[str]:
    return sorted(h.text for h in search(conn, store, Query(text=words)))


def key_id(secret: str) -> str:
    return Keyring.parse(secret).current.key_id


# -- the key file ---------------------------------------------------------------------


def test_one_key_keeps_the_key_id_it_had_before_rotation_existed() -> None:
    before = derive(OLD.encode(), b"imbridge archive key id v1")[:8].hex()
    assert Cipher(OLD).key_id == before
    assert Cipher(f"  {OLD}  \n\n").key_id == before  # blank lines and spaces do not count


def test_first_line_is_current_and_the_others_retired() -> None:
    ring = Keyring.parse(ROTATED)
    assert ring.current.key_id == key_id(NEW)
    assert ring.ids == (key_id(NEW), key_id(OLD))
    assert [k.line for k in ring] == [1, 2]
    assert OLD not in repr(ring.all)


def write_config(tmp_path: Path, keys: str) -> Path:
    key_file = tmp_path / "archive.key"
    write_secret(key_file, keys)
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"bridge: {{state_dir: {tmp_path / 'state'}}}\n"
        "networks: {a: {type: memory}}\n"
        "archive:\n"
        "  retention_days: 30\n"
        f"  encryption_key_file: {key_file}\n"
    )
    return path


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (f"{NEW}\nshort-retired-key\n", "the key on line 2 must be at least 32 characters"),
        (f"{NEW}\n\n{OLD}\n{NEW}\n", "the key on line 4 repeats the key on line 1"),
        ("\n\n", "holds no key"),
        ("short", "the key must be at least 32 characters"),
    ],
)
def test_a_bad_key_line_is_named_with_the_yaml_path_and_never_echoed(
    tmp_path: Path, keys: str, problem: str
) -> None:
    path = write_config(tmp_path, keys)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (issue,) = [str(i) for i in caught.value.issues]
    assert issue.startswith("archive.encryption_key (line 5): ")
    assert problem in issue
    for line in keys.split():
        assert line not in issue


def test_a_rotated_key_file_loads(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ROTATED))
    assert config.archive.encryption_key is not None
    assert Keyring.of(config.archive.encryption_key) is not None


# -- records and search ---------------------------------------------------------------


def test_rotation_keeps_every_record_readable_searchable_and_verifiable(tmp_path: Path) -> None:
    before, conn = open_archive(tmp_path, OLD)
    record(before, conn, 1, "wombat figures for Tuesday")
    record(before, conn, 2, "numbat sighting")
    after, conn = open_archive(tmp_path, ROTATED)
    record(after, conn, 3, "wombat figures for Friday")

    bodies = [r.record.body for r in after.rows(conn, "WHERE kind = 'event' ORDER BY seq")]
    assert [key_id_of(b) for b in bodies] == [key_id(OLD), key_id(OLD), key_id(NEW)]
    assert [after.body(r.record)["text"] for r in after.rows(conn, "WHERE kind = 'event'")] == [
        "wombat figures for Tuesday",
        "numbat sighting",
        "wombat figures for Friday",
    ]
    assert texts_found(after, conn, "WOMBAT figures") == [
        "wombat figures for Friday",
        "wombat figures for Tuesday",
    ]
    assert texts_found(after, conn, "numbat") == ["numbat sighting"]
    assert texts_found(after, conn, "wombat friday") == ["wombat figures for Friday"]
    assert after.verify(conn) == (None, 6)


def test_search_words_under_several_keys_cannot_inject_query_syntax(tmp_path: Path) -> None:
    store, conn = open_archive(tmp_path, ROTATED)
    record(store, conn, 1, 'say "NEAR" OR quokka*')
    for query in ('"NEAR" OR', "quokka*", ") OR (", 'NEAR(" a b ")'):
        search(conn, store, Query(text=query))  # never an FTS5 syntax error
    assert texts_found(store, conn, "near or quokka") == ['say "NEAR" OR quokka*']
    assert texts_found(store, conn, "quokka absent") == []


def test_without_the_retired_key_its_records_name_the_missing_key(tmp_path: Path) -> None:
    before, conn = open_archive(tmp_path, OLD)
    record(before, conn, 1, "wombat")
    dropped, conn = open_archive(tmp_path, NEW)  # the retired key was removed too early
    row = next(dropped.rows(conn, "ORDER BY seq"))
    with pytest.raises(ArchiveKeyError, match=f"encrypted with key {key_id(OLD)}, which"):
        dropped.body(row.record)
    problem, _ = dropped.verify(conn)
    assert problem is not None
    assert f"encrypted with key {key_id(OLD)}" in str(problem)


def test_bodies_from_before_key_ids_open_under_a_retired_key() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    aead = AESGCM(derive(OLD.encode(), b"imbridge archive body v1"))
    nonce = b"\1" * 12
    old = "aesgcm1:" + base64.b64encode(nonce + aead.encrypt(nonce, b"hi", b"9")).decode()
    assert Cipher(ROTATED).opened(old, 9) == ("hi", key_id(OLD))
    with pytest.raises(ArchiveKeyError, match="cannot decrypt"):
        Cipher(NEW).decrypt(old, 9)


# -- relay rows -----------------------------------------------------------------------


def test_rows_sealed_under_the_retired_key_still_open() -> None:
    sealed = Sealer(OLD).seal("pending delivery", table="outbox", key="t1")
    rotated = Sealer(ROTATED)
    assert rotated.opened(sealed, table="outbox", key="t1") == ("pending delivery", key_id(OLD))
    new = rotated.seal("later delivery", table="outbox", key="t2")
    assert new.startswith(f"sealed2:{key_id(NEW)}:")
    with pytest.raises(SealError, match=f"encrypted with key {key_id(OLD)}"):
        Sealer(NEW).open(sealed, table="outbox", key="t1")
    with pytest.raises(SealError, match="does not open"):
        rotated.open(sealed, table="outbox", key="t2")  # moved to another row


def test_rows_sealed_before_key_ids_open_under_a_retired_key() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    aead = AESGCM(derive(OLD.encode(), b"imbridge relay state seal v1"))
    nonce = b"\2" * 12
    blob = aead.encrypt(nonce, b"queued", b"outbox\0t1")
    legacy = "sealed1:" + base64.b64encode(nonce + blob).decode()
    assert Sealer(ROTATED).opened(legacy, table="outbox", key="t1") == ("queued", key_id(OLD))


# -- stored attachments ---------------------------------------------------------------


def test_files_stored_under_the_retired_key_stay_readable(tmp_path: Path) -> None:
    root = tmp_path / "archive-files"
    data = b"quarterly figures " * 10_000  # several chunks
    old = FileStore(root, OLD).put(data)
    rotated = FileStore(root, ROTATED)
    assert rotated.find(old.sha256) == old.file_id
    assert rotated.read_checked(rotated.find(old.sha256), old.sha256) == data
    assert rotated.key_of(old.file_id) == key_id(OLD)

    new = rotated.put(b"minutes of the meeting")
    assert rotated.key_of(new.file_id) == key_id(NEW)
    assert new.file_id != FileStore(root, OLD).file_id(new.sha256)  # named under the new key
    with pytest.raises(ArchiveKeyError, match=f"encrypted with key {key_id(OLD)}"):
        b"".join(FileStore(root, NEW).chunks(old.file_id))


def test_files_from_before_key_ids_open_under_a_retired_key(tmp_path: Path) -> None:
    root = tmp_path / "archive-files"
    store = FileStore(root, OLD)
    stored = store.put(b"legacy attachment")
    path = store.path(stored.file_id)
    raw = path.read_bytes()  # IMBF2 + key id + the rest; IMBF1 had no key id
    path.write_bytes(MAGIC + raw[len(MAGIC) + 8 :])
    rotated = FileStore(root, ROTATED)
    assert rotated.read_checked(stored.file_id, stored.sha256) == b"legacy attachment"
    assert rotated.key_of(stored.file_id) == key_id(OLD)
    with pytest.raises(ArchiveKeyError, match="cannot decrypt"):
        b"".join(FileStore(root, NEW).chunks(stored.file_id))


# -- what each key still seals ----------------------------------------------------------


def test_usage_tells_when_a_retired_key_can_go(tmp_path: Path) -> None:
    before, conn = open_archive(tmp_path, OLD)
    record(before, conn, 1, "wombat")
    FileStore(tmp_path / "files", OLD).put(b"old attachment")
    conn.execute("CREATE TABLE outbox (txn_id TEXT, payload TEXT)")
    conn.execute(
        "INSERT INTO outbox VALUES ('t1', ?)",
        (Sealer(OLD).seal("queued", table="outbox", key="t1"),),
    )
    after, conn = open_archive(tmp_path, ROTATED)
    record(after, conn, 2, "numbat")
    assert after.cipher is not None
    usage = key_usage(conn, after.cipher, FileStore(tmp_path / "files", ROTATED))
    lines = list(usage.lines(after.cipher.keyring))
    assert (
        lines[0]
        == f"encryption key {key_id(NEW)} (current): seals 2 records, 0 relay rows, 0 files"
    )
    assert lines[1].startswith(
        f"encryption key {key_id(OLD)} (retired, line 2): seals 2 records, 1 relay row, 1 file; "
        "keep it"
    )

    conn.execute("DELETE FROM archive_records WHERE seq <= 2")  # retention removed them
    conn.execute("DELETE FROM outbox")
    for file_id in list(FileStore(tmp_path / "files").ids()):
        FileStore(tmp_path / "files").remove(file_id)
    usage = key_usage(conn, after.cipher, FileStore(tmp_path / "files", ROTATED))
    assert list(usage.lines(after.cipher.keyring))[1] == (
        f"encryption key {key_id(OLD)} (retired, line 2): seals nothing any more; "
        "it can be removed from archive.encryption_key_file"
    )


def test_verify_says_per_key_what_it_still_seals(tmp_path: Path) -> None:
    from tests.unit.test_archive_commands import (  # noqa: PLC0415 - its daemon and CLI helpers
        POSTS,
        call,
        run_daemon,
    )
    from tests.unit.test_archive_commands import write_config as bridge_config  # noqa: PLC0415

    key_file = tmp_path / "archive.key"
    write_secret(key_file, OLD)
    path = bridge_config(tmp_path, extra=f"  encryption_key_file: {key_file}")
    asyncio.run(run_daemon(path, POSTS[:2]))
    write_secret(key_file, ROTATED)

    code, out, _ = call("archive_search", path, "MERGER figures", fmt="json")
    assert code == 0
    assert json.loads(out)[0]["text"] == "the CONFIDENTIAL merger figures"
    code, out, _ = call("archive_verify", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("archive intact")
    current = f"encryption key {key_id(NEW)} (current): seals 1 record, 0 relay rows, 0 files"
    assert lines[1] == current  # the search's access record, written after the rotation
    assert lines[2].startswith(f"encryption key {key_id(OLD)} (retired, line 2): seals ")
    assert lines[2].endswith("keep it until retention has removed them")
