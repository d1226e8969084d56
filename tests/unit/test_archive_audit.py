"""Holds and settings applied on reload, and the audit trail, as a compliance officer
checks them: a daemon on memory adapters is reloaded the way SIGHUP does it, and
`archive audit|search|export|verify|purge` answer from the config file."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.archive.actor import Actor
from imbridge.archive.configs import HoldChange, hold_changes
from imbridge.archive.store import now_us
from imbridge.commands.archive import (
    archive_export,
    archive_purge,
    archive_search,
    archive_verify,
)
from imbridge.commands.audit import archive_audit
from imbridge.config import load_config
from imbridge.config.schema import LegalHold
from imbridge.daemon import Daemon
from imbridge.db import DB_NAME
from imbridge.testing import write_secret
from tests.unit.conftest import settle, until

DAY_US = 86_400 * 1_000_000

CONFIG = """
bridge: {{state_dir: "{state}"}}
networks:
  corp: {{type: memory}}
  partner: {{type: memory}}
gateways:
  ops:
    rooms:
      - {{network: corp, room: "#ops"}}
      - {{network: partner, room: "#ops-partner"}}
archive:
  retention_days: 30
  checkpoint_seconds: {checkpoint}
{extra}
"""


def write(path: Path, extra: str = "", *, checkpoint: float = 3600) -> Path:
    path.write_text(CONFIG.format(state=path.parent / "state", extra=extra, checkpoint=checkpoint))
    return path


async def call(fn: Callable[..., int], *args: object, **kw: object) -> tuple[int, str, str]:
    """A command as the CLI runs it (its own event loop, so in a thread of its own)."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(lambda: fn(*args, out=out, err=err, **kw))
    return code, out.getvalue(), err.getvalue()


def records(path: Path, kind: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(action, body) of each record of `kind`, in chain order, read as an auditor would."""
    db = sqlite3.connect(path.parent / "state" / DB_NAME)
    try:
        rows = db.execute(
            "SELECT action, body FROM archive_records WHERE kind = ? ORDER BY seq", (kind,)
        ).fetchall()
    finally:
        db.close()
    return [(a, json.loads(b)) for a, b in rows]


class Clock:
    """The archive's clock, moved forward by the test instead of waiting weeks."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_us() + self.offset


Running = tuple[Daemon, MemoryHub, Clock]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    daemons: list[Daemon] = []

    async def start(path: Path, hub: MemoryHub | None = None) -> Running:
        shared = hub or MemoryHub()

        def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
            return MemoryAdapter(name, net, cursors, shared)

        daemon = Daemon(load_config(path), factory=build)
        assert daemon.archive is not None
        clock = Clock()
        daemon.archive.store.clock = clock
        await daemon.start()
        daemons.append(daemon)
        assert await daemon.ready(5)
        return daemon, shared, clock

    yield start
    for daemon in daemons:
        if daemon.outbox is not None and not daemon.outbox._closing:
            await daemon.stop(drain=0)


async def post(daemon: Daemon, hub: MemoryHub, lines: list[tuple[str, str, str]]) -> None:
    before = len(hub.posts)
    for room, sender, text in lines:
        hub.post(room, sender, text)
    await until(lambda: len(hub.posts) >= before + 2 * len(lines))
    await settle(daemon)


def test_hold_diff_places_lifts_and_replaces_changed_globs() -> None:
    recorded = {
        "kept": {"network": "*", "room": "#a", "user": "*"},
        "gone": {"network": "*", "room": "#b", "user": "*"},
        "moved": {"network": "*", "room": "#c", "user": "*"},
    }
    holds = [
        LegalHold(name="kept", room="#a"),
        LegalHold(name="moved", room="#d"),
        LegalHold(name="new", user="carol"),
    ]
    assert hold_changes(recorded, holds) == [
        HoldChange("gone", "lifted", recorded["gone"]),
        HoldChange("moved", "lifted", recorded["moved"]),
        HoldChange("moved", "placed", {"network": "*", "room": "#d", "user": "*"}),
        HoldChange("new", "placed", {"network": "*", "room": "*", "user": "carol"}),
    ]
    assert hold_changes({}, []) == []


async def test_hold_added_by_reload_survives_the_daily_purge(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    path = write(tmp_path / "bridge.yaml")
    daemon, hub, clock = await running(path)
    await post(daemon, hub, [("#ops", "alice", "alpha words"), ("#ops", "carol", "carol words")])

    write(path, "  legal_hold: [{name: case-7, user: carol}]")
    await daemon.reload(load_config(path))  # what SIGHUP does

    clock.offset = 60 * DAY_US  # two months later, the daily purge runs
    assert daemon.archive is not None
    result = await daemon.archive.purge()
    assert result.deleted > 0
    assert result.held > 0
    _, out, _ = await call(archive_search, path, "words", fmt="json")
    assert [h["sender"] for h in json.loads(out)] == ["carol"]
    # The hold and the configs that were in force outlive retention.
    assert [(a, b["name"]) for a, b in records(path, "hold")] == [("placed", "case-7")]
    assert [a for a, _ in records(path, "config")] == ["start", "reload"]


async def test_lifted_hold_and_shorter_retention_apply_at_reload(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    path = write(tmp_path / "bridge.yaml", "  legal_hold: [{name: case-7, user: carol}]")
    daemon, hub, clock = await running(path)
    await post(daemon, hub, [("#ops", "carol", "carol words")])
    clock.offset = 60 * DAY_US
    write(path)  # the hold is lifted: a reload purges at once, as a restart would
    with capture_logs() as logs:
        await daemon.reload(load_config(path))
    assert any(e["event"] == "legal_hold_lifted" and e["hold"] == "case-7" for e in logs)
    assert any(e["event"] == "archive_purged" for e in logs), logs
    assert "no matching records" in (await call(archive_search, path, "carol"))[1]
    assert [a for a, _ in records(path, "hold")] == ["placed", "lifted"]


async def test_config_records_name_what_changed_and_who_without_secrets(
    tmp_path: Path, running: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    monkeypatch.setenv("INVOCATION_ID", "0123abcd")
    key = tmp_path / "archive.key"
    write_secret(key, "s3cr3t-" * 8)
    path = write(tmp_path / "bridge.yaml", f"  encryption_key_file: {key}")
    daemon, _, _ = await running(path)
    text = path.read_text().replace("retention_days: 30", "retention_days: 40")
    path.write_text(text + '  notice: "archived"\n  legal_hold: [{name: case-7, room: "#ops"}]\n')
    await daemon.reload(load_config(path))
    await daemon.stop(drain=0)

    # Changed while the daemon was down: the next start records it all the same.
    path.write_text(text + '  legal_hold: [{name: case-8, room: "#ops"}]\n')
    daemon, _, _ = await running(path)
    await daemon.stop(drain=0)

    configs = records(path, "config")
    assert [a for a, _ in configs] == ["start", "reload", "start"]
    start, reload, restart = (b for _, b in configs)
    assert start["changed"][:5] == ["bridge", "networks", "gateways", "policy", "archive"]
    assert "archive.legal_hold" in start["changed"]  # the first config: everything is new
    assert reload["changed"] == [
        "archive",
        "archive.legal_hold",
        "archive.notice",
        "archive.retention_days",
    ]
    assert restart["changed"] == ["archive", "archive.legal_hold", "archive.notice"]
    assert restart["file"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert reload["by"]["sudo_user"] == "alice"
    assert reload["by"]["invocation_id"] == "0123abcd"
    assert reload["by"]["via"] == "daemon"
    holds = [(a, b["name"], b["globs"]["room"]) for a, b in records(path, "hold")]
    assert holds == [
        ("placed", "case-7", "#ops"),
        ("lifted", "case-7", "#ops"),
        ("placed", "case-8", "#ops"),
    ]
    raw = (path.parent / "state" / DB_NAME).read_bytes()
    assert b"s3cr3t" not in raw


async def test_changed_notice_is_posted_in_every_bridged_room(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    path = write(tmp_path / "bridge.yaml", '  notice: "first notice"')
    daemon, hub, _ = await running(path)

    def notices(text: str) -> list[str]:
        return sorted(p.room for p in hub.posts if p.text.endswith(text))

    await until(lambda: notices("first notice") == ["#ops", "#ops-partner"])
    write(path, '  notice: "second notice"')
    await daemon.reload(load_config(path))
    await until(lambda: notices("second notice") == ["#ops", "#ops-partner"])
    await daemon.reload(load_config(path))  # unchanged: not posted again
    await post(daemon, hub, [("#ops", "alice", "sentinel")])
    assert notices("second notice") == ["#ops", "#ops-partner"]


async def test_shorter_checkpoint_interval_and_logging_apply_at_reload(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    path = write(tmp_path / "bridge.yaml", "  log_checkpoints: false")
    daemon, hub, _ = await running(path)
    heads = path.parent / "state" / "archive-heads.jsonl"
    written = len(heads.read_text().splitlines())
    write(path, checkpoint=0.05)
    with capture_logs() as logs:
        await daemon.reload(load_config(path))
        await post(daemon, hub, [("#ops", "alice", "after the reload")])
        tail = await daemon.db.read(daemon.archive.store.tail) if daemon.archive else None
        assert tail is not None
        await until(lambda: any(e.get("seq") == tail.seq for e in logs), timeout=10)
    assert len(heads.read_text().splitlines()) > written + 1


async def test_key_and_enabled_changes_wait_for_a_restart_and_say_so(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    path = write(tmp_path / "bridge.yaml")
    daemon, hub, _ = await running(path)
    key = tmp_path / "archive.key"
    write_secret(key, "k" * 44)
    write(path, f"  encryption_key_file: {key}")
    with capture_logs() as logs:
        await daemon.reload(load_config(path))
    (warning,) = [e for e in logs if e["event"] == "archive_restart_required"]
    assert warning["keys"] == ["archive.encryption_key"]
    assert warning["log_level"] == "warning"
    await post(daemon, hub, [("#ops", "alice", "still readable")])
    # The old setting stays in force: the new message is searchable without the key.
    write(path)
    assert "still readable" in (await call(archive_search, path, "readable"))[1]
    write(path, "  enabled: false")
    with capture_logs() as logs:
        await daemon.reload(load_config(path))
    assert [e["keys"] for e in logs if e["event"] == "archive_restart_required"] == [
        ["archive.enabled"]
    ]
    _, reload = records(path, "config")[-1]
    assert reload["restart_required"] == ["archive.enabled"]


async def test_every_access_is_listed_by_archive_audit(
    tmp_path: Path, running: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "bridge.yaml", "  legal_hold: [{name: case-7, user: carol}]")
    daemon, hub, _ = await running(path)
    await post(daemon, hub, [("#ops", "alice", "merger figures"), ("#ops", "bob", "lunch")])
    await daemon.stop(drain=0)

    monkeypatch.setenv("SUDO_USER", "auditor")
    assert (await call(archive_search, path, "merger", room="#ops"))[0] == 0
    assert (await call(archive_export, path, fmt="jsonl", user="bob"))[0] == 0
    assert (await call(archive_verify, path))[0] == 0
    assert (await call(archive_purge, path))[0] == 0
    code, out, _ = await call(archive_audit, path, fmt="json")
    assert code == 0
    trail = json.loads(out)
    access = [(e["action"], e["query"], e["results"]) for e in trail if e["kind"] == "access"]
    assert access == [
        ("search", {"text": "merger", "room": "#ops", "limit": 100}, 1),
        ("export", {"user": "bob", "format": "jsonl"}, 1),
        ("verify", {"intact": True}, access[2][2]),
        ("purge", access[3][1], 0),
    ]
    assert access[2][2] > 0
    assert access[3][1]["holds"] == ["case-7"]
    me = Actor.of_process().user
    assert {e["who"] for e in trail if e["kind"] == "access"} == {f"auditor (sudo as {me})"}
    assert [(e["kind"], e["action"]) for e in trail if e["kind"] != "access"] == [
        ("config", "start"),
        ("hold", "placed"),
    ]
    # Reading the trail is an access too, and the table says who, when and what.
    code, out, _ = await call(archive_audit, path, kind="access")
    assert code == 0
    assert "audit" in out.splitlines()[-1]
    assert "text='merger'" in out
    assert (await call(archive_audit, path, since="2999-01-01"))[1].strip() == "no audit records"
    assert (await call(archive_audit, path, since="soon"))[0] == 2
    assert (await call(archive_verify, path))[0] == 0  # the trail is part of the intact chain


async def test_access_queries_are_encrypted_with_the_archive_key(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    key = tmp_path / "archive.key"
    write_secret(key, "k" * 44)
    path = write(tmp_path / "bridge.yaml", f"  encryption_key_file: {key}")
    daemon, _, _ = await running(path)
    await daemon.stop(drain=0)
    assert (await call(archive_search, path, "zanzibar"))[0] == 0
    raw = (path.parent / "state" / DB_NAME).read_bytes()
    assert b"zanzibar" not in raw
    assert "text='zanzibar'" in (await call(archive_audit, path))[1]
    keyless = write(tmp_path / "keyless.yaml")
    code, out, _ = await call(archive_audit, keyless, kind="access")
    assert code == 0
    (row,) = [line for line in out.splitlines() if " search " in line]
    assert "encrypted" in row


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_export_purge_and_search_show_progress_only_on_a_terminal(
    tmp_path: Path, running: Callable[..., Any]
) -> None:
    path = write(tmp_path / "bridge.yaml")
    daemon, hub, _ = await running(path)
    await post(daemon, hub, [("#ops", "alice", f"line {n}") for n in range(5)])
    await daemon.stop(drain=0)

    async def drawn(fn: Callable[..., int], *args: object, **kw: object) -> tuple[str, str]:
        term, piped = Terminal(), io.StringIO()
        for err in (term, piped):
            code = await asyncio.to_thread(
                functools.partial(fn, *args, out=io.StringIO(), err=err, **kw)
            )
            assert code == 0
        return term.getvalue(), piped.getvalue()

    term, piped = await drawn(archive_export, path, fmt="jsonl", output=tmp_path / "x.jsonl")
    assert "exporting" in term
    assert "/5.00" in term  # the total: five messages
    assert piped == ""
    term, piped = await drawn(archive_search, path, "line")
    assert "searching" in term
    assert piped == ""
    term, piped = await drawn(archive_purge, path)
    assert "purging" in term
    assert piped == ""


def test_archive_audit_is_wired_into_the_imbridge_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imbridge.cli import main  # noqa: PLC0415 - the command as a shell runs it

    path = write(tmp_path / "bridge.yaml")
    assert main(["archive", "audit", "-c", str(path), "--kind", "hold", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(SystemExit) as exc:
        main(["archive", "audit", "-c", str(path), "--kind", "message"])
    assert exc.value.code == 2
