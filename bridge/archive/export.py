"""Exports for auditors and e-discovery tools: JSON Lines, and one RFC 5322 message per
chat message (`.eml`).

Each exported item carries its chain position and hash, so a reviewer can tie any line
or mail back to the verified archive. Text is exported as received; what was sent to each
destination (redacted or not) and the delivery outcome travel alongside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TextIO, cast

from imbridge.archive.search import Query, filters
from imbridge.archive.store import ArchiveStore, Row
from imbridge.db import Conn
from imbridge.dialect import dialect_of

_LOCAL_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
TEXT_TYPES = frozenset({"message", "edit", "topic"})
OUTCOMES = frozenset({"decision", "delivery", "file"})
"""The kinds of record that tell what became of an event, exported with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    row: Row
    event: dict[str, Any]
    decisions: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    files: list[dict[str, Any]] = field(default_factory=list)
    """The `file` records: each attachment's outcome, and its digest when stored."""

    @property
    def time(self) -> datetime:
        ts = self.event.get("origin", {}).get("ts")
        if isinstance(ts, str):
            return datetime.fromisoformat(ts)
        return datetime.fromtimestamp(self.row.record.ts_us / 1_000_000, UTC)

    def as_json(self) -> dict[str, Any]:
        r = self.row.record
        return {
            "seq": r.seq,
            "hash": self.row.hash.hex(),
            "recorded": datetime.fromtimestamp(r.ts_us / 1_000_000, UTC).isoformat(),
            "event": self.event,
            "decisions": self.decisions,
            "deliveries": self.deliveries,
            "files": self.files,
        }


PAGE = 500
"""Event records whose decisions, deliveries and files are read in one query: the
export holds one page at a time, however long the archive (and SQLite's limit of
bound parameters, 32 766 since 3.32, stays far away)."""


def items(
    conn: Conn,
    store: ArchiveStore,
    query: Query,
    *,
    seqs: Sequence[int] | None = None,
) -> Iterator[Item]:
    """Event records in chain order with their decisions, deliveries and files; with
    `seqs`, only those records (a keyword search's hits, as the review console exports
    them). Walks the records as the cursor reads them, a page at a time, so an export
    of years takes the memory of one page; on PostgreSQL, walk a `dialect.streamed`
    connection for that (the default cursor reads a whole result at once)."""
    clauses, params = filters(query, dialect_of(conn), prefix="")
    if seqs is not None:
        clauses.append(f"seq IN ({', '.join('?' * len(seqs))})" if seqs else "FALSE")
        params.extend(seqs)
    where = " AND ".join(clauses)
    page: list[Row] = []
    for row in store.rows(conn, f"WHERE {where} ORDER BY seq", params):
        page.append(row)
        if len(page) == PAGE:
            yield from _with_outcomes(conn, store, page)
            page = []
    yield from _with_outcomes(conn, store, page)


def _with_outcomes(conn: Conn, store: ArchiveStore, page: list[Row]) -> Iterator[Item]:
    """The page's events, each with its decision, delivery and file records."""
    if not page:
        return
    ids = list({row.record.event_id for row in page if row.record.event_id})
    outcomes: dict[str | None, list[Row]] = {}
    for other in store.rows_of(conn, ids, OUTCOMES):
        outcomes.setdefault(other.record.event_id, []).append(other)
    for row in page:
        decisions: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        files: list[dict[str, Any]] = []
        for other in outcomes.get(row.record.event_id, ()):
            o = other.record
            if o.kind == "file":
                files.append({"seq": o.seq, **store.body(o)})
                continue
            entry = {
                "seq": o.seq,
                "dest_network": o.dest_network,
                "dest_room": o.dest_room,
                "action": o.action,
                "rule": o.rule,
                **store.body(o),
            }
            (decisions if o.kind == "decision" else deliveries).append(entry)
        yield Item(
            row=row,
            event=store.body(row.record),
            decisions=decisions,
            deliveries=deliveries,
            files=files,
        )


def write_jsonl(found: Iterator[Item], out: TextIO) -> int:
    n = 0
    for item in found:
        out.write(json.dumps(item.as_json(), ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


def _address(name: str, ident: str, network: str) -> Address:
    local = _LOCAL_UNSAFE.sub("_", ident).strip(".") or "unknown"
    local = re.sub(r"\.{2,}", ".", local)
    domain = re.sub(r"[^A-Za-z0-9-]+", "-", network).strip("-").lower() or "network"
    return Address(
        display_name=_CONTROL.sub(" ", name), username=local, domain=f"{domain}.imbridge.invalid"
    )


def stored_files(item: Item) -> Iterator[dict[str, Any]]:
    """The `file` records of an item whose bytes the archive holds."""
    for entry in item.files:
        if entry.get("status") == "stored" and isinstance(entry.get("sha256"), str):
            yield entry


FileReader = Callable[[dict[str, Any]], bytes | None]
"""The checked bytes of a stored attachment (`exportfiles.Carrier.read`), None if lost."""


def to_email(item: Item, read_file: FileReader | None = None) -> EmailMessage:
    r = item.row.record
    event = item.event
    origin = event.get("origin", {})
    network, room = r.network or "", r.room or ""
    sender = r.sender or ""
    text = str(event.get("text") or event.get("reason") or event.get("status") or "")
    for a in event.get("attachments", ()):
        text += f"\n[attachment: {a.get('name') or ''} {a.get('url')}]"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(str(origin.get("name") or sender), sender, network)
    msg["To"] = _address(room, room, network)
    msg["Date"] = format_datetime(item.time)
    msg["Message-ID"] = f"<{r.event_id}@imbridge.invalid>"
    thread = event.get("thread")
    target = event.get("reply_to") or event.get("target") or thread
    if target:
        msg["In-Reply-To"] = f"<{target}@imbridge.invalid>"
    if thread:  # mail readers thread by References, as chat clients by the root
        msg["References"] = f"<{thread}@imbridge.invalid>"
        msg["X-Imbridge-Thread"] = str(thread)
    first = _CONTROL.sub(" ", text.strip().split("\n", 1)[0])[:70]
    kind = "" if event.get("type") == "message" else f"({event.get('type')}) "
    msg["Subject"] = f"[{network} {_CONTROL.sub(' ', room)}] {kind}{first}"
    msg["X-Imbridge-Network"] = network
    msg["X-Imbridge-Room"] = _CONTROL.sub(" ", room)
    msg["X-Imbridge-Sender"] = _CONTROL.sub(" ", sender)
    msg["X-Imbridge-Seq"] = str(r.seq)
    msg["X-Imbridge-Hash"] = item.row.hash.hex()
    for d in item.decisions:
        rule = f" ({d['rule']})" if d.get("rule") else ""
        where = _CONTROL.sub(" ", f"{d['dest_network']} {d['dest_room']}")
        msg["X-Imbridge-Decision"] = f"{where}: {d['action']}{rule}"
    msg.set_content(text or "(no text)", charset="utf-8")
    for entry in stored_files(item):
        data = read_file(entry) if read_file is not None else None
        if data is None:
            continue
        maintype, _, subtype = str(entry.get("mimetype") or "").partition("/")
        if not maintype or not subtype or maintype == "multipart":
            maintype, subtype = "application", "octet-stream"
        name = _CONTROL.sub(" ", str(entry.get("name") or "")) or str(entry["sha256"])[:16]
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        part = cast(list[EmailMessage], msg.get_payload())[-1]
        part["X-Imbridge-Sha256"] = str(entry["sha256"])
    return msg


def write_eml(found: Iterator[Item], directory: Path, read_file: FileReader | None = None) -> int:
    """One `.eml` file per text-bearing event, named by chain position; with `read_file`,
    each stored attachment is a MIME part of it."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for item in found:
        if item.event.get("type") not in TEXT_TYPES:
            continue
        path = directory / f"{item.row.record.seq:012d}.eml"
        path.write_bytes(to_email(item, read_file).as_bytes())
        n += 1
    return n
