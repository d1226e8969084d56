"""The archive as an auditor meets it: a daemon (memory adapters) relays under policy
and records every decision, then `archive search|verify|export|purge` and `policy
test|explain` answer from the config file, as the CLI calls them."""

from __future__ import annotations

import asyncio
import email
import importlib
import io
import json
import sqlite3
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config import load_config
from imbridge.daemon import Daemon
from imbridge.db import DB_NAME, Database
from imbridge.testing import write_secret
from tests.unit.conftest import settle, until


def command(module: str, name: str) -> Any:
    """Imported at call time: if the package `imbridge.commands` is not installed, only
    these tests fail, not the collection of everyone's."""
    return getattr(importlib.import_module(f"imbridge.commands.{module}"), name)


def call(name: str, *args: object, **kw: object) -> tuple[int, str, str]:
    module = "policy" if name.startswith("policy") else "archive"
    out, err = io.StringIO(), io.StringIO()
    code = command(module, name)(*args, out=out, err=err, **kw)
    return int(code), out.getvalue(), err.getvalue()


CONFIG = """
bridge: {{state_dir: "{state}"}}
networks:
  corp: {{type: memory}}
  partner: {{type: memory}}
  public: {{type: memory}}
gateways:
  ops:
    rooms:
      - {{network: corp, room: "#ops"}}
      - {{network: partner, room: "#ops-partner"}}
      - {{network: public, room: "#ops-public"}}
policy:
  default: allow
  groups:
    trading: [{{network: corp, room: "#trading"}}]
    research: [{{network: partner, room: "#research"}}]
  barriers:
    - {{name: chinese-wall, between: [trading, research]}}
  rules:
    - name: nothing-confidential-leaves
      action: deny
      from: {{network: corp}}
      to: {{network: public}}
      text: "(?i)\\\\bconfidential\\\\b"
      notify_sender: true
    - name: redact-cards
      action: redact
      text: "\\\\b\\\\d{{4}}-\\\\d{{4}}-\\\\d{{4}}-\\\\d{{4}}\\\\b"
archive:
  retention_days: 30
  legal_hold: [{{name: case-7, user: carol}}]
{extra}
"""


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", extra=extra))
    return path


async def run_daemon(path: Path, posts: list[tuple[str, str, str]]) -> MemoryHub:
    """Relays `posts` (room, sender, text) through a daemon that archives."""
    config = load_config(path)
    async with Database(config.bridge.state_dir / DB_NAME, {"archive": ARCHIVE_MIGRATIONS}):
        pass  # the archive tables, until the daemon creates them itself
    hub = MemoryHub()

    def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
        return MemoryAdapter(name, net, cursors, hub)

    store = ArchiveStore(config.archive, state_dir=config.bridge.state_dir)
    daemon = Daemon(config, factory=build, recorder=store)
    await daemon.start()
    try:
        assert await daemon.ready(5)
        for room, sender, text in posts:
            hub.post(room, sender, text)
        await until(lambda: len([p for p in hub.posts if not p.relayed]) >= len(posts))
        await until(lambda: len(hub.posts) >= len(posts) * 2)
        await settle(daemon)
        await daemon.db.read(store.checkpoint)
    finally:
        await daemon.stop(drain=0)
    return hub


POSTS = [
    ("#ops", "alice", "the CONFIDENTIAL merger figures"),
    ("#ops", "bob", "lunch at noon?"),
    ("#ops", "carol", "card 1234-5678-9012-3456 please"),
]


@pytest.fixture
async def archived(tmp_path: Path) -> tuple[Path, MemoryHub]:
    path = write_config(tmp_path)
    hub = await run_daemon(path, POSTS)
    return path, hub


def test_denied_keyword_reaches_allowed_room_only_and_is_archived_both_ways(
    archived: tuple[Path, MemoryHub],
) -> None:
    path, hub = archived
    partner = [p.text for p in hub.in_room("#ops-partner")]
    public = [p.text for p in hub.in_room("#ops-public")]
    assert any("CONFIDENTIAL merger" in t for t in partner)
    assert not any("merger" in t for t in public)
    notices = [p.text for p in hub.in_room("#ops") if p.sender != "alice" and "policy" in p.text]
    assert notices
    assert "nothing-confidential-leaves" in notices[0]
    assert "merger" not in notices[0]  # the rule is named, the text is not repeated

    code, out, _ = call("archive_search", path, "merger", fmt="json")
    assert code == 0
    hits = json.loads(out)
    assert [h["sender"] for h in hits] == ["alice"]
    decisions = {
        (o["dest_network"], o["action"], o["rule"])
        for o in hits[0]["outcomes"]
        if o["kind"] == "decision"
    }
    assert decisions == {
        ("partner", "allow", "default"),
        ("public", "deny", "nothing-confidential-leaves"),
    }
    delivered = [o for o in hits[0]["outcomes"] if o["kind"] == "delivery"]
    assert [(o["dest_network"], o["action"]) for o in delivered] == [("partner", "delivered")]


def test_search_filters_and_table(archived: tuple[Path, MemoryHub]) -> None:
    path, _ = archived
    code, out, _ = call("archive_search", path, "lunch", room="#ops", user="b*")
    assert code == 0
    assert "lunch at noon?" in out
    assert "partner:#ops-partner allow (default)" in out
    assert call("archive_search", path, "lunch", user="alice")[1].strip() == "no matching records"
    assert "no matching" in call("archive_search", path, "lunch", since="2999-01-01")[1]
    assert call("archive_search", path, "x", since="yesterday")[0] == 2
    # FTS5 syntax in a query is just words, never an error.
    assert call("archive_search", path, 'merger" OR NEAR(')[0] == 0


def test_redaction_is_archived_with_what_was_sent(archived: tuple[Path, MemoryHub]) -> None:
    path, hub = archived
    assert "card [redacted] please" in [
        p.text.split("> ", 1)[-1] for p in hub.in_room("#ops-partner")
    ]
    code, out, _ = call("archive_export", path, fmt="jsonl", user="carol")
    assert code == 0
    (line,) = out.splitlines()
    item = json.loads(line)
    assert item["event"]["text"] == "card 1234-5678-9012-3456 please"  # as received
    sent = {d["dest_network"]: d for d in item["decisions"]}
    assert sent["partner"]["action"] == "redact"
    assert sent["partner"]["sent"]["text"] == "card [redacted] please"


def test_verify_then_tamper(archived: tuple[Path, MemoryHub]) -> None:
    path, _ = archived
    code, out, _ = call("archive_verify", path)
    assert (code, out.startswith("archive intact:")) == (0, True), out
    db = sqlite3.connect(path.parent / "state" / DB_NAME)
    db.execute(
        "UPDATE archive_records SET body = replace(body, 'noon', 'one') WHERE kind = 'event'"
    )
    db.commit()
    db.close()
    code, out, _ = call("archive_verify", path)
    assert code == 1
    assert out.startswith("TAMPERED: record ")


def test_export_eml_one_message_per_chat_message(
    archived: tuple[Path, MemoryHub], tmp_path: Path
) -> None:
    path, _ = archived
    outdir = tmp_path / "eml"
    code, _, _ = call("archive_export", path, fmt="eml", output=outdir, room="#ops")
    assert code == 0
    files = sorted(outdir.glob("*.eml"), key=lambda f: int(f.stem))
    assert len(files) == len(POSTS) + 1  # and the bridge's policy notice to alice
    notice = email.message_from_bytes(files[1].read_bytes(), policy=default_policy)
    assert notice["X-Imbridge-Sender"] == "imbridge"
    assert "nothing-confidential-leaves" in notice.get_content()
    mail = email.message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert mail["From"].addresses[0].display_name == "alice"
    assert mail["X-Imbridge-Sender"] == "alice"
    decisions = mail.get_all("X-Imbridge-Decision") or []
    assert "public #ops-public: deny (nothing-confidential-leaves)" in decisions
    assert mail.get_content().strip() == "the CONFIDENTIAL merger figures"
    assert b"\r\n" in files[0].read_bytes()  # RFC 5322 line ends
    assert call("archive_export", path, fmt="eml")[0] == 2  # eml needs a directory


def test_purge_keeps_legal_hold_and_verify_passes(
    archived: tuple[Path, MemoryHub],
) -> None:
    path, _ = archived
    # Age every record by 60 days, as if the bridge had run two months ago.
    db = sqlite3.connect(path.parent / "state" / DB_NAME)
    db.execute("UPDATE archive_records SET ts_us = ts_us - 60 * 86400 * 1000000")
    db.commit()
    db.close()
    # Rewriting timestamps breaks the chain: rebuild it as if they had been recorded so.
    _rechain(path.parent / "state" / DB_NAME)
    (path.parent / "state" / "archive-heads.jsonl").unlink()
    assert call("archive_checkpoint", path)[0] == 0
    code, out, _ = call("archive_purge", path)
    assert code == 0, out
    assert "kept under legal hold" in out
    assert call("archive_verify", path)[0] == 0
    code, out, _ = call("archive_search", path, "", fmt="json")
    assert [h["sender"] for h in json.loads(out)] == ["carol"]  # only the held one is left
    code, out, _ = call("archive_purge", path)
    assert "nothing older" in out


def _rechain(db_path: Path) -> None:
    from imbridge.archive.chain import COLUMNS, GENESIS, link  # noqa: PLC0415

    db = sqlite3.connect(db_path)
    prev = GENESIS
    cols = ", ".join(COLUMNS)
    for raw in db.execute(f"SELECT {cols} FROM archive_records ORDER BY seq").fetchall():  # noqa: S608
        prev = link(prev, raw)
        db.execute("UPDATE archive_records SET hash = ? WHERE seq = ?", (prev, raw[0]))
    db.execute("UPDATE archive_chain SET hash = ?", (prev,))
    db.commit()
    db.close()


def test_encrypted_archive_searchable_only_with_the_key(tmp_path: Path) -> None:
    key = tmp_path / "archive.key"
    write_secret(key, "k" * 44)
    path = write_config(tmp_path, extra=f"  encryption_key_file: {key}")
    asyncio.run(run_daemon(path, POSTS[:2]))
    db = sqlite3.connect(tmp_path / "state" / DB_NAME)
    bodies = " ".join(r[0] for r in db.execute("SELECT body FROM archive_records"))
    terms = " ".join(r[0] for r in db.execute("SELECT terms FROM archive_fts"))
    db.close()
    assert "merger" not in bodies
    assert "merger" not in terms
    code, out, _ = call("archive_search", path, "MERGER figures", fmt="json")
    assert code == 0
    assert json.loads(out)[0]["text"] == "the CONFIDENTIAL merger figures"
    assert call("archive_verify", path)[0] == 0
    # Without the key: metadata is readable, content is not.
    write_config(tmp_path)
    code, _, err = call("archive_search", path, "merger")
    assert code == 1
    assert "encrypted" in err


def test_policy_test_exit_codes_and_output(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    code, out, _ = call(
        "policy_test", path, source="corp:#ops:alice", to="public", text="a confidential memo"
    )
    assert code == 1
    assert "decision: deny" in out
    assert "rule:     nothing-confidential-leaves" in out
    assert "confidential memo" not in out.split("notice:")[-1]
    code, out, _ = call(
        "policy_test",
        path,
        source="corp:#ops:alice",
        to="partner:#ops-partner",
        text="a confidential memo",
    )
    assert (code, "decision: allow" in out) == (0, True)
    code, out, _ = call(
        "policy_test",
        path,
        source="corp:#ops:alice",
        to="public:#ops-public",
        text="card 1234-5678-9012-3456",
    )
    assert code == 0
    assert "redacted: card [redacted]" in out
    code, out, _ = call(
        "policy_test", path, source="corp:#trading:alice", to="partner:#research", text="hi"
    )
    assert code == 1
    assert "chinese-wall" in out
    code, out, _ = call(
        "policy_test",
        path,
        source="corp:#ops:alice",
        to="public",
        text="ok",
        quoted="the confidential figures",
    )
    assert code == 1
    assert call("policy_test", path, source="corp", to="public", text="x")[0] == 2


def test_policy_explain_lists_rules_in_order(tmp_path: Path) -> None:
    code, out, _ = call("policy_explain", write_config(tmp_path))
    assert code == 0
    lines = out.splitlines()
    names = [ln.split()[1] for ln in lines[1:4]]
    assert names == ["chinese-wall", "nothing-confidential-leaves", "redact-cards"]
    assert "default" in lines[4]
    assert "text /(?i)\\bconfidential\\b/" in out
    assert "group trading: corp:#trading:*" in out


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("irc:#ops:alice", ("irc", "#ops", "alice")),
        ("mx:!abc:example.org:@bob:example.org", ("mx", "!abc:example.org", "@bob:example.org")),
        ("xmpp:ops@conf.corp:alice@corp/home", ("xmpp", "ops@conf.corp", "alice@corp/home")),
    ],
)
def test_source_spec(spec: str, parsed: tuple[str, str, str]) -> None:
    assert command("policy", "parse_source")(spec) == parsed


def test_argument_wiring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The subcommands as `cli.py` wires them (`add_parsers` + `dispatch`)."""
    import argparse  # noqa: PLC0415

    commands = importlib.import_module("imbridge.commands")
    parser = argparse.ArgumentParser(prog="imbridge")
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    path = str(write_config(tmp_path))
    argv = [
        "policy",
        "test",
        "-c",
        path,
        "--from",
        "corp:#ops:alice",
        "--to",
        "public",
        "--text",
        "confidential",
    ]
    assert commands.dispatch(parser.parse_args(argv)) == 1
    assert "decision: deny" in capsys.readouterr().out
    assert commands.dispatch(parser.parse_args(["policy", "explain", "-c", path])) == 0
    assert commands.dispatch(parser.parse_args(["archive", "checkpoint", "-c", path])) == 0
    assert commands.dispatch(parser.parse_args(["archive", "verify", "-c", path])) == 0
    capsys.readouterr()
    argv = ["archive", "search", "-c", path, "x", "--room", "#ops", "--format", "json"]
    assert commands.dispatch(parser.parse_args(argv)) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_export_in_pages_keeps_every_record_and_its_outcomes(
    archived: tuple[Path, MemoryHub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export reads a page of records at a time (years of archive must not have to
    fit in memory); pages of two give the same export as one page for everything."""
    path, _ = archived
    monkeypatch.setattr(importlib.import_module("imbridge.archive.export"), "PAGE", 10**6)
    code, whole, _ = call("archive_export", path, fmt="jsonl")
    assert code == 0
    monkeypatch.setattr(importlib.import_module("imbridge.archive.export"), "PAGE", 2)
    assert call("archive_export", path, fmt="jsonl")[1] == whole
    items = [json.loads(line) for line in whole.splitlines()]
    assert len(items) > 2  # more than one page
    assert [i["seq"] for i in items] == sorted(i["seq"] for i in items)
    posted = {text for _, _, text in POSTS}
    messages = [i for i in items if i["event"].get("text") in posted]
    assert [i["event"]["text"] for i in messages] == [text for _, _, text in POSTS]
    for item in messages:  # each allowed or redacted to two rooms, denied or delivered
        assert len(item["decisions"]) == 2, item
        assert {d["dest_network"] for d in item["deliveries"]} <= {"partner", "public"}
        assert item["deliveries"], item
