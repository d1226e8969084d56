"""`config` and `hold` records: which configuration was in force from when, and each legal
hold placed or lifted, in the chain beside the messages they governed.

A compliance officer asked "was this room under hold on 3 May?" answers from the chain,
not from whatever the file says today. So every applied config (at start and at each
reload) is a record, and hold changes are found by diffing the file's holds against the
holds the chain last recorded, not against the previous process's memory: a hold edited
while the daemon was stopped is recorded at the next start all the same.

No secret reaches these records: sections are fingerprinted from their dumps, in which
pydantic masks every secret field, so a password appears neither in clear nor hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from imbridge.archive.actor import Actor
from imbridge.archive.store import ArchiveStore
from imbridge.config.schema import Config, LegalHold
from imbridge.db import Conn

SECTIONS = ("bridge", "networks", "gateways", "policy")
"""Top-level sections compared whole; `archive` is compared key by key."""

Globs = dict[str, str]


@dataclass(frozen=True, slots=True)
class HoldChange:
    name: str
    change: Literal["placed", "lifted"]
    globs: Globs


@dataclass(frozen=True, slots=True)
class Applied:
    """What one applied config changed: the names of the sections and archive keys, and
    the holds placed or lifted (also appended to the chain)."""

    changed: tuple[str, ...]
    holds: tuple[HoldChange, ...]
    seq: int


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")  # secrets come out as "**********"
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


def _digest(value: Any) -> str:
    text = json.dumps(_dump(value), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(config: Config) -> dict[str, str]:
    """A digest per top-level section and per archive key, secrets masked."""
    out = {name: _digest(getattr(config, name)) for name in SECTIONS}
    for key, value in config.archive.model_dump(mode="json").items():
        out[f"archive.{key}"] = _digest(value)
    return out


def _with_archive(keys: Sequence[str]) -> tuple[str, ...]:
    archive = [k for k in keys if k.startswith("archive.")]
    top = [k for k in SECTIONS if k in keys]
    return (*top, *(["archive", *sorted(archive)] if archive else []))


def changed_keys(before: Mapping[str, str] | None, after: Mapping[str, str]) -> tuple[str, ...]:
    """Sections and archive keys whose digest differs (all of them without a `before`)."""
    prior = before or {}
    return _with_archive([k for k, v in after.items() if prior.get(k) != v])


def changed_between(old: Config, new: Config) -> tuple[str, ...]:
    """Like `changed_keys` but on the live values, so a changed secret counts too."""
    keys = [name for name in SECTIONS if getattr(old, name) != getattr(new, name)]
    keys += [
        f"archive.{key}"
        for key in type(new.archive).model_fields
        if getattr(old.archive, key) != getattr(new.archive, key)
    ]
    return _with_archive(keys)


def file_facts(path: Path | None) -> dict[str, Any] | None:
    """The config file as it is now: its SHA-256 proves which text was applied."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
        st = path.stat()
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}
    return {
        "path": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "mtime": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
        "owner_uid": st.st_uid,
    }


def globs_of(hold: LegalHold) -> Globs:
    return {"network": hold.network, "room": hold.room, "user": hold.user}


def recorded_holds(conn: Conn) -> dict[str, Globs]:
    """The config file's holds in force by the chain's own account: every `hold` record
    folded in order (hold records are never purged, so the fold starts from nothing).
    Holds placed in the review console (`source: console`) live in the state database,
    not the file: a reload must not record them as lifted."""
    held: dict[str, Globs] = {}
    for action, body in conn.execute(
        "SELECT action, body FROM archive_records WHERE kind = 'hold' ORDER BY seq"
    ):
        data = json.loads(body)
        if data.get("source") == "console":
            continue
        if action == "placed":
            held[str(data["name"])] = dict(data["globs"])
        else:
            held.pop(str(data["name"]), None)
    return held


def hold_changes(recorded: Mapping[str, Globs], holds: Sequence[LegalHold]) -> list[HoldChange]:
    """Lifted first, then placed; a hold whose globs changed is lifted and placed again,
    so each record states exactly what it covered."""
    current = {h.name: globs_of(h) for h in holds}
    lifted = [
        HoldChange(name, "lifted", globs)
        for name, globs in recorded.items()
        if current.get(name) != globs
    ]
    placed = [
        HoldChange(name, "placed", globs)
        for name, globs in current.items()
        if recorded.get(name) != globs
    ]
    return [*lifted, *placed]


def last_fingerprint(conn: Conn) -> dict[str, str] | None:
    row = conn.execute(
        "SELECT body FROM archive_records WHERE kind = 'config' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    sections = json.loads(row[0]).get("sections")
    return dict(sections) if isinstance(sections, dict) else None


def record_config(
    conn: Conn,
    store: ArchiveStore,
    config: Config,
    actor: Actor,
    *,
    event: Literal["start", "reload"],
    changed: Sequence[str] | None = None,
    restart_required: Sequence[str] = (),
) -> Applied:
    """Appends the `config` record and one `hold` record per hold change, in the
    caller's transaction. `changed` defaults to the diff against the last config record."""
    prints = fingerprint(config)
    keys = tuple(changed) if changed is not None else changed_keys(last_fingerprint(conn), prints)
    holds = hold_changes(recorded_holds(conn), config.archive.legal_hold)
    by = actor.as_json()
    body: dict[str, Any] = {
        "event": event,
        "file": file_facts(config.source),
        "changed": list(keys),
        "sections": prints,
        "by": by,
    }
    if restart_required:
        body["restart_required"] = list(restart_required)
    records: list[dict[str, Any]] = [
        {"kind": "config", "action": event, "sender": actor.principal, "body": body}
    ]
    records += [
        {
            "kind": "hold",
            "action": h.change,
            "sender": actor.principal,
            "body": {"name": h.name, "globs": h.globs, "by": by},
        }
        for h in holds
    ]
    head = store.append(conn, records)
    return Applied(keys, tuple(holds), head.seq - len(holds))
