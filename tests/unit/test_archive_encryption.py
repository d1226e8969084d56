"""Encryption at rest against someone who can write the database but lacks the key:
content cannot be moved between records, re-attributed, or slipped in as clear text,
even with the chain recomputed and the heads re-signed with the local signing key."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from imbridge.archive.chain import GENESIS, link
from imbridge.archive.crypto import ArchiveKeyError, Cipher
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.schema import Archive
from imbridge.events import EventId, Message, Origin, Sender
from imbridge.policy import Action, Decision, Destination
from imbridge.testing import sqlite_schema

KEY = "k" * 40
OTHER_KEY = "o" * 40


def message(i: int, sender: str = "alice") -> Message:
    return Message(
        id=EventId(f"ev{i}"),
        origin=Origin(network="corp", room="#ops", sender=Sender(id=sender, name=sender)),
        text=f"merger figures {i}",
    )


def open_archive(tmp_path: Path, key: str | None = KEY) -> tuple[ArchiveStore, sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        sqlite_schema(conn, ARCHIVE_MIGRATIONS)
    settings = Archive(encryption_key=SecretStr(key) if key else None)
    return ArchiveStore(settings, state_dir=tmp_path), conn


def record(store: ArchiveStore, conn: sqlite3.Connection, n: int, start: int = 0) -> None:
    dest = Destination("partner", "#p")
    for i in range(start, start + n):
        e = message(i)
        store.record_event(conn, e, [(dest, Decision(action=Action.ALLOW, rule="default"))])
    store.checkpoint(conn)


def cover_tracks(store: ArchiveStore, conn: sqlite3.Connection) -> None:
    """Recomputes the chain and replaces the head file with heads re-signed under the
    local key: all an attacker without the archive key can do."""
    prev, last = GENESIS, 0
    for row in list(store.rows(conn, "ORDER BY seq")):
        prev, last = link(prev, row.record), row.record.seq
        conn.execute("UPDATE archive_records SET hash = ? WHERE seq = ?", (prev, last))
    conn.execute("UPDATE archive_chain SET seq = ?, hash = ?", (last, prev))
    store.head_file.unlink()
    store.checkpoint(conn, force=True)


def test_encrypted_archive_verifies_and_reads_back(tmp_path: Path) -> None:
    store, conn = open_archive(tmp_path)
    record(store, conn, 5)
    store.checkpoint(conn)
    assert store.verify(conn) == (None, 10)
    first = next(store.rows(conn, "ORDER BY seq")).record
    assert first.body.startswith(f"aesgcm2:{store.cipher and store.cipher.key_id}:")
    assert "merger" not in first.body
    assert store.body(first)["text"] == "merger figures 0"


def test_changed_sender_no_longer_opens_even_with_the_chain_recomputed(tmp_path: Path) -> None:
    store, conn = open_archive(tmp_path)
    record(store, conn, 5)
    conn.execute("UPDATE archive_records SET sender = 'mallory' WHERE seq = 3")
    cover_tracks(store, conn)
    problem, _ = store.verify(conn)
    assert problem is not None
    assert str(problem).startswith("record 3: its encrypted content does not open")
    row = next(store.rows(conn, "WHERE seq = 3"))
    with pytest.raises(ArchiveKeyError, match="record 3: cannot decrypt"):
        store.body(row.record)


def test_ciphertext_moved_to_another_record_no_longer_opens(tmp_path: Path) -> None:
    store, conn = open_archive(tmp_path)
    record(store, conn, 5)
    conn.execute(
        "UPDATE archive_records SET body = (SELECT body FROM archive_records WHERE seq = 1) "
        "WHERE seq = 7"
    )
    cover_tracks(store, conn)
    problem, _ = store.verify(conn)
    assert problem is not None
    assert str(problem).startswith("record 7: its encrypted content does not open")


def test_plain_text_slipped_in_after_encrypted_records_fails_verify(tmp_path: Path) -> None:
    store, conn = open_archive(tmp_path)
    record(store, conn, 5)
    conn.execute("""UPDATE archive_records SET body = '{"text":"nothing to see"}' WHERE seq = 5""")
    cover_tracks(store, conn)
    problem, _ = store.verify(conn)
    assert problem is not None
    assert str(problem).startswith("record 5: its content is in clear in an encrypted archive")


def test_records_from_before_the_key_was_set_are_legacy_and_verify(tmp_path: Path) -> None:
    plain, conn = open_archive(tmp_path, key=None)
    record(plain, conn, 3)
    plain.checkpoint(conn)
    store, conn = open_archive(tmp_path)
    record(store, conn, 3, start=3)
    store.checkpoint(conn)
    assert store.verify(conn) == (None, 12)
    bodies = [r.record.body for r in store.rows(conn, "ORDER BY seq")]
    assert not any(b.startswith("aesgcm") for b in bodies[:6])
    assert all(b.startswith("aesgcm2:") for b in bodies[6:])


def test_records_sealed_under_another_key_name_its_id(tmp_path: Path) -> None:
    other, conn = open_archive(tmp_path, key=OTHER_KEY)
    record(other, conn, 1)
    store, conn = open_archive(tmp_path)
    row = next(store.rows(conn, "ORDER BY seq"))
    assert other.cipher is not None
    assert store.cipher is not None
    assert other.cipher.key_id != store.cipher.key_id
    with pytest.raises(ArchiveKeyError, match=f"encrypted with key {other.cipher.key_id}"):
        store.body(row.record)


def test_bodies_sealed_before_key_ids_still_read(tmp_path: Path) -> None:
    """`aesgcm1:` bodies bound only the sequence number; archives hold them for years."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    from imbridge.archive.keyring import derive  # noqa: PLC0415

    aead = AESGCM(derive(KEY.encode(), b"imbridge archive body v1"))
    nonce = b"\1" * 12
    old = (
        "aesgcm1:" + base64.b64encode(nonce + aead.encrypt(nonce, b'{"text":"hi"}', b"9")).decode()
    )
    assert Cipher(KEY).decrypt(old, 9) == '{"text":"hi"}'
