"""The audit trail of access: who searched, exported, verified or purged the archive, when,
with which query, and how many records they got; listed with the `config` and `hold`
records by `imbridge archive audit`.

SEC 17a-4(f)'s audit-trail alternative asks for a record of who did what to the records;
so every access is an `access` record in the same hash chain, where deleting one breaks
the chain like deleting a message would. `record_access` is the one way in: the CLI
commands call it, and so will the review console, with its own `Actor`.

Access records follow retention like messages; their query (which may quote message
words) is encrypted with the archive key like message content, while who, when and the
command stay readable without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imbridge.archive.actor import Actor
from imbridge.archive.chain import Head
from imbridge.archive.crypto import ArchiveKeyError
from imbridge.archive.store import ArchiveStore
from imbridge.db import Conn, Database

AUDIT_KINDS = ("access", "config", "hold")


def record_access(
    conn: Conn,
    store: ArchiveStore,
    actor: Actor,
    action: str,
    *,
    query: Mapping[str, Any],
    results: int | None,
) -> Head:
    """Appends one `access` record in the caller's transaction. `action` names what was
    done (`search`, `export`, `verify`, `purge`, `audit`, a console's `view`); `query`
    holds its filters, unset ones left out; `results`, how many records it returned."""
    return store.append(
        conn,
        [
            {
                "kind": "access",
                "action": action,
                "sender": actor.principal,
                "body": {
                    "by": actor.as_json(),
                    "query": {k: v for k, v in query.items() if v is not None},
                    "results": results,
                },
            }
        ],
    )


async def log_access(
    db: Database,
    store: ArchiveStore,
    actor: Actor,
    action: str,
    *,
    query: Mapping[str, Any],
    results: int | None,
) -> Head:
    """`record_access` in its own transaction, then a checkpoint: an access made while no
    daemon runs is in the head file at once, so deleting it shows as a cut tail."""
    head = await db.transact(
        lambda conn: record_access(conn, store, actor, action, query=query, results=results),
        background=True,
    )
    await db.read(store.checkpoint, background=True)
    return head


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    seq: int
    time: datetime
    kind: str
    action: str
    who: str
    body: dict[str, Any] | None
    """None: encrypted, and no key configured."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "kind": self.kind,
            "action": self.action,
            "who": self.who,
        }
        if self.body is None:
            out["encrypted"] = True
        else:
            out.update({k: v for k, v in self.body.items() if k != "sections"})
        return out

    def detail(self) -> str:
        body = self.body
        if body is None:
            return "(encrypted: needs archive.encryption_key_file)"
        match self.kind:
            case "access":
                query = ", ".join(f"{k}={v!r}" for k, v in body.get("query", {}).items())
                results = body.get("results")
                shown = f" -> {results} records" if results is not None else ""
                return f"{query or '(no filter)'}{shown}"
            case "config":
                file = body.get("file") or {}
                digest = str(file.get("sha256", ""))[:16]
                changed = ", ".join(body.get("changed", ())) or "nothing"
                pending = body.get("restart_required")
                more = f"; needs restart: {', '.join(pending)}" if pending else ""
                return f"changed: {changed}; sha256 {digest}{more}"
            case "hold":
                g = body.get("globs", {})
                where = f"network={g.get('network')} room={g.get('room')} user={g.get('user')}"
                return f"{body.get('name')} ({where})"
            case _:
                return ""


def entries(
    conn: Conn,
    store: ArchiveStore,
    *,
    since_us: int | None = None,
    kinds: Sequence[str] = AUDIT_KINDS,
) -> Iterator[Entry]:
    """The trail in chain order: `access`, `config` and `hold` records."""
    marks = ", ".join("?" * len(kinds))
    where = f"WHERE kind IN ({marks})"
    params: list[Any] = list(kinds)
    if since_us is not None:
        where += " AND ts_us >= ?"
        params.append(since_us)
    for row in store.rows(conn, f"{where} ORDER BY seq", params):
        r = row.record
        try:
            body: dict[str, Any] | None = store.body(r)
        except ArchiveKeyError:
            body = None
        who = r.sender or "?"
        if body is not None and isinstance(body.get("by"), dict):
            who = Actor.from_json(body["by"]).label()
        yield Entry(
            seq=r.seq,
            time=datetime.fromtimestamp(r.ts_us / 1_000_000, UTC),
            kind=r.kind,
            action=r.action or "",
            who=who,
            body=body,
        )


def table(found: Sequence[Entry]) -> str:
    """Entries as an aligned text table, the detail last and unpadded."""
    head = ("SEQ", "TIME (UTC)", "KIND", "ACTION", "WHO", "DETAIL")
    rows = [head] + [
        (
            str(e.seq),
            e.time.strftime("%Y-%m-%d %H:%M:%S"),
            e.kind,
            e.action,
            e.who,
            e.detail(),
        )
        for e in found
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )
