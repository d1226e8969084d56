"""How much each archive key still seals: what tells an operator when a retired key may
leave `archive.encryption_key_file`.

A retired key is needed as long as anything it sealed is kept: archive records, the
relay's sealed rows (quoting copies, queued deliveries, reaction keys) and stored
attachments. Each names its key (`aesgcm2:`, `sealed2:`, `IMBF2`), so counting is a
scan of prefixes; what was sealed before key ids is attributed to the key that opens it.
Read-only: `archive verify` runs it after its walk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from imbridge.archive.crypto import PREFIX as RECORD_V1
from imbridge.archive.crypto import PREFIX2 as RECORD_V2
from imbridge.archive.crypto import Cipher
from imbridge.archive.files import MAGIC, FileStore
from imbridge.archive.keyring import ArchiveKeyError, Keyring
from imbridge.archive.sealing import PREFIX as SEALED_V1
from imbridge.archive.sealing import PREFIX2 as SEALED_V2
from imbridge.archive.sealing import Sealer, SealError, key_id_of
from imbridge.db import Conn
from imbridge.dialect import tables
from imbridge.errors import ConfigError, ConfigIssue

RELAY_TABLES = (
    ("messages", "event_id", "payload"),
    ("outbox", "txn_id", "payload"),
    ("reactions", "event_id", "key"),
    ("long_texts", "key", "payload"),
)
"""Each sealed column of the relay's tables, with the row key its seal is bound to."""


@dataclass(slots=True)
class Sealed:
    """What one key seals."""

    records: int = 0
    relay_rows: int = 0
    files: int = 0

    @property
    def total(self) -> int:
        return self.records + self.relay_rows + self.files

    def describe(self) -> str:
        if not self.total:
            return "nothing"
        return ", ".join(
            _count(n, what)
            for n, what in (
                (self.records, "record"),
                (self.relay_rows, "relay row"),
                (self.files, "file"),
            )
        )


@dataclass(slots=True)
class Usage:
    by_key: dict[str, Sealed] = field(default_factory=dict)
    """Key id -> what it seals; every key of the keyring is present, even unused."""
    unopened: Sealed = field(default_factory=Sealed)
    """Sealed before key ids, and no key of the keyring opens it."""

    def of(self, key_id: str | None) -> Sealed:
        if key_id is None:
            return self.unopened
        return self.by_key.setdefault(key_id, Sealed())

    def lines(self, keyring: Keyring) -> Iterator[str]:
        """One line per key, for a person deciding whether a retired key can go."""
        for key in keyring:
            sealed = self.by_key.get(key.key_id, Sealed())
            if key is keyring.current:
                yield f"encryption key {key.key_id} (current): seals {sealed.describe()}"
                continue
            retired = f"encryption key {key.key_id} (retired, line {key.line})"
            if sealed.total:
                yield (
                    f"{retired}: seals {sealed.describe()}; "
                    "keep it until retention has removed them"
                )
            else:
                yield (
                    f"{retired}: seals nothing any more; "
                    "it can be removed from archive.encryption_key_file"
                )
        for kid, sealed in self.by_key.items():
            if keyring.get(kid) is None:
                yield (
                    f"encryption key {kid} (not in archive.encryption_key_file): seals "
                    f"{sealed.describe()}, which cannot be read without it"
                )
        if self.unopened.total:
            yield (
                f"no key of archive.encryption_key_file opens {self.unopened.describe()} "
                "sealed before key ids"
            )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def key_usage(conn: Conn, cipher: Cipher, files: FileStore) -> Usage:
    """What each key seals in the state database and the attachment store."""
    keyring = cipher.keyring
    usage = Usage({k.key_id: Sealed() for k in keyring})
    _count_records(conn, cipher, usage)
    _count_relay(conn, Sealer(keyring), usage)
    for file_id in files.ids():
        kid = files.key_of(file_id)
        if kid is not None or _sealed_file(files, file_id):
            usage.of(kid).files += 1
    return usage


def _count_records(conn: Conn, cipher: Cipher, usage: Usage) -> None:
    start, width = len(RECORD_V2) + 1, 16  # substr() counts from 1
    for kid, n in conn.execute(
        "SELECT substr(body, ?, ?), count(*) FROM archive_records "
        "WHERE substr(body, 1, ?) = ? GROUP BY 1",
        (start, width, len(RECORD_V2), RECORD_V2),
    ):
        usage.of(str(kid)).records += int(n)
    for seq, body in conn.execute(
        "SELECT seq, body FROM archive_records WHERE substr(body, 1, ?) = ?",
        (len(RECORD_V1), RECORD_V1),
    ):
        try:
            usage.of(cipher.opened(body, int(seq))[1]).records += 1
        except ArchiveKeyError:
            usage.unopened.records += 1


def _count_relay(conn: Conn, sealer: Sealer, usage: Usage) -> None:
    present = tables(conn)
    start, width = len(SEALED_V2) + 1, 16
    for table, key, column in RELAY_TABLES:
        if table not in present:
            continue  # the daemon never ran on this state directory
        for kid, n in conn.execute(
            f"SELECT substr({column}, ?, ?), count(*) FROM {table} "  # noqa: S608 - fixed names
            f"WHERE substr({column}, 1, ?) = ? GROUP BY 1",
            (start, width, len(SEALED_V2), SEALED_V2),
        ):
            usage.of(str(kid)).relay_rows += int(n)
        for row_key, stored in conn.execute(
            f"SELECT {key}, {column} FROM {table} WHERE substr({column}, 1, ?) = ?",  # noqa: S608 - fixed names
            (len(SEALED_V1), SEALED_V1),
        ):
            try:
                usage.of(sealer.opened(stored, table=table, key=str(row_key))[1]).relay_rows += 1
            except SealError:
                usage.unopened.relay_rows += 1


def pending_unopenable(conn: Conn, sealer: Sealer) -> dict[str, int]:
    """Queued deliveries that do not open with the configured keys, by the key id they
    name ("" for those from before key ids): the worker reaching one could send neither
    it nor anything queued behind it."""
    lost: dict[str, int] = {}
    for txn_id, payload in conn.execute(
        "SELECT txn_id, payload FROM outbox WHERE state = 'pending' AND "
        "(substr(payload, 1, ?) = ? OR substr(payload, 1, ?) = ?)",
        (len(SEALED_V2), SEALED_V2, len(SEALED_V1), SEALED_V1),
    ):
        try:
            sealer.open(payload, table="outbox", key=str(txn_id))
        except SealError:
            kid = key_id_of(payload) or ""
            lost[kid] = lost.get(kid, 0) + 1
    return lost


def require_openable(conn: Conn, sealer: Sealer) -> None:
    """Raises, naming the missing keys, when a queued delivery does not open."""
    lost = pending_unopenable(conn, sealer)
    if not lost:
        return
    named = ", ".join(
        f"{n} under key {kid}" if kid else f"{n} from before key ids" for kid, n in lost.items()
    )
    problem = (
        f"queued deliveries are sealed with keys archive.encryption_key_file does not "
        f"hold ({named}): put each key back as a retired line after the current one and "
        "start again; if a key is lost, so are its deliveries: delete them from the outbox "
        "table of imbridge.db, with the daemon stopped"
    )
    raise ConfigError([ConfigIssue("archive.encryption_key", None, problem)])


def _sealed_file(files: FileStore, file_id: str) -> bool:
    """A file from before key ids that no key opens (still sealed, so it counts)."""
    try:
        with files.path(file_id).open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


__all__ = ["Sealed", "Usage", "key_usage", "pending_unopenable", "require_openable"]
