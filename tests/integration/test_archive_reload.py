"""SIGHUP to a running `imbridge run` applies the archive section at once, as a compliance
officer relies on it: a legal hold added by reload survives the purge that the shortened
retention triggers, a changed room notice is posted in every bridged room, and `archive
audit` shows both configs, the hold placed and the search made.

The bridge is a real process on memory networks (feed and delivery files stand in for
the servers: nothing here depends on a protocol); its records are back-dated between
two runs, the way a long-running archive looks, and re-chained so that `verify` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imbridge.archive.chain import COLUMNS, GENESIS, link
from imbridge.commands.archive import archive_checkpoint, archive_search, archive_verify
from imbridge.commands.audit import archive_audit
from tests.integration.fault_helpers import BridgeProcess, poll

pytestmark = pytest.mark.integration

DAY_US = 86_400 * 1_000_000


def config(tmp_path: Path, **archive: Any) -> str:
    def net(name: str, room: str) -> dict[str, Any]:
        return {
            "type": "memory",
            "feed_file": str(tmp_path / f"{name}.feed"),
            "feed_room": room,
            "delivery_file": str(tmp_path / f"{name}.out"),
        }

    return json.dumps({
        "bridge": {"state_dir": str(tmp_path / "state"), "log": {"format": "json"}},
        "networks": {"a": net("a", "#x"), "b": net("b", "#y")},
        "gateways": {"g": {"rooms": [{"network": "a", "room": "#x"},
                                     {"network": "b", "room": "#y"}]}},
        "archive": {"enabled": True, **archive},
    }, indent=1)  # fmt: skip


async def cli(fn: Callable[..., int], *args: object, **kw: object) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(lambda: fn(*args, out=out, err=err, **kw))
    return code, out.getvalue() + err.getvalue()


def delivered(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / f"{name}.out"
    if not path.exists():
        return []
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line]


def backdate(db_path: Path, days: int) -> None:
    """Moves every record `days` into the past and re-chains, as if recorded then."""
    db = sqlite3.connect(db_path)
    db.execute("UPDATE archive_records SET ts_us = ts_us - ?", (days * DAY_US,))
    prev = GENESIS
    cols = ", ".join(COLUMNS)
    for raw in db.execute(f"SELECT {cols} FROM archive_records ORDER BY seq").fetchall():  # noqa: S608 - fixed names
        prev = link(prev, raw)
        db.execute("UPDATE archive_records SET hash = ? WHERE seq = ?", (prev, raw[0]))
    db.execute("UPDATE archive_chain SET hash = ?", (prev,))
    db.commit()
    db.close()


async def test_sighup_hold_survives_the_purge_and_new_notice_is_posted(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(config(tmp_path, retention_days=3650, notice="first notice"))
    (tmp_path / "a.feed").write_text("kept from a\n")
    (tmp_path / "b.feed").write_text("dropped from b\n")
    bridge = BridgeProcess(path, tmp_path / "bridge.log")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(bridge.terminate)
        bridge.start()
        await bridge.ready()
        await poll(lambda: any("kept from a" in t for t in delivered(tmp_path, "b")), 15, "a->b")
        await poll(lambda: any("dropped" in t for t in delivered(tmp_path, "a")), 15, "b->a")
        assert bridge.terminate() == 0

        # Two months pass; the bridge starts again with a long retention: nothing purged.
        backdate(tmp_path / "state" / "imbridge.db", 60)
        (tmp_path / "state" / "archive-heads.jsonl").unlink()
        assert (await cli(archive_checkpoint, path))[0] == 0
        bridge.start()
        await bridge.ready(times=2)

        # SIGHUP: 30 days, a hold on what was said on network a, a new notice.
        path.write_text(
            config(
                tmp_path,
                retention_days=30,
                notice="second notice",
                legal_hold=[{"name": "case-7", "network": "a", "user": "feeder"}],
            )
        )
        bridge.hup()
        await poll(lambda: bridge.count("config_reloaded") == 1, 15, "the reload")
        await poll(lambda: bridge.count("archive_purged") == 1, 15, "the purge", bridge.tail)
        purged = next(e for e in bridge.events() if e.get("event") == "archive_purged")
        assert purged["held"] > 0, purged
        assert bridge.count("legal_hold_placed", hold="case-7") == 1

        code, out = await cli(archive_search, path, "from", fmt="json")
        assert code == 0, out
        assert [(h["network"], h["text"]) for h in json.loads(out)] == [("a", "kept from a")]

        def noticed() -> bool:
            return all("second notice" in delivered(tmp_path, n) for n in ("a", "b"))

        await poll(noticed, 15, "the new notice in both rooms")

        code, out = await cli(archive_audit, path, fmt="json")
        assert code == 0, out
        trail = json.loads(out)
        assert [(e["kind"], e["action"]) for e in trail if e["kind"] != "access"] == [
            ("config", "start"),
            ("config", "start"),
            ("config", "reload"),
            ("hold", "placed"),
        ]
        reload = next(e for e in trail if e["action"] == "reload")
        assert {"archive.legal_hold", "archive.notice", "archive.retention_days"} <= set(
            reload["changed"]
        )
        assert [(e["action"], e["results"]) for e in trail if e["kind"] == "access"] == [
            ("search", 1)
        ]
        assert (await cli(archive_verify, path))[0] == 0
        assert bridge.terminate() == 0
