"""Capture on the relay path, on memory adapters through the real daemon: what is
archived but not relayed (configured bots, their relayed copies), what a relay marker
from anyone else gets (relayed and archived), the bridge's own notices on the record,
and what the relay keeps beside the archive: sealed with the key, purged with retention,
no word left in the state directory after a purge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imbridge.adapters.memory import MemoryAdapter
from imbridge.archive.retention import DAY_US
from imbridge.archive.sealing import Sealer, SealError
from imbridge.archive.search import Hit, Query, search
from imbridge.archive.store import ArchiveStore, now_us
from imbridge.cursors import NetworkCursors
from imbridge.daemon import Daemon
from imbridge.db import Database
from imbridge.errors import PermanentSendError
from imbridge.events import Message, Origin, Sender, new_event_id
from imbridge.screening import OWN_ECHO, RELAY_MARKER, screen
from tests.unit.conftest import StartDaemon, settle, until

KEY = "k" * 44


def body(*, ignore: str = "[]", archive: str = "{}", policy: str = "{}") -> str:
    return f"""
networks:
  a: {{type: memory, ignore_users: {ignore}}}
  b: {{type: memory}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
policy: {policy}
archive: {archive}
"""


def store_of(daemon: Daemon) -> ArchiveStore:
    assert daemon.archive is not None
    return daemon.archive.store


async def find(daemon: Daemon, words: str) -> list[Hit]:
    store = store_of(daemon)
    await daemon.db.transact(store.index_pending)
    return await daemon.db.read(lambda conn: search(conn, store, Query(text=words)))


async def rows(daemon: Daemon, sql: str) -> list[Any]:
    return await daemon.db.read(lambda conn: conn.execute(sql).fetchall())


def found_in_files(state_dir: Path, words: list[str]) -> dict[str, list[str]]:
    """Which of `words` occur, as bytes, in which file under `state_dir` (WAL included)."""
    hits: dict[str, list[str]] = {}
    for path in state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            present = [w for w in words if w.encode() in data]
            if present:
                hits[str(path)] = present
    return hits


async def test_ignored_sender_is_archived_as_ignored_and_never_relayed(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(body(ignore='["*bot"]'))
    hub.post("#x", "pagerbot", "disk almost full on zebrahost")
    hub.post("#x", "alice", "real person")
    await until(lambda: len(hub.texts("#y")) == 1)
    await settle(daemon)
    assert hub.texts("#y") == ["<alice@a> real person"]
    (hit,) = await find(daemon, "zebrahost")
    assert hit.sender == "pagerbot"
    assert [(o.action, o.rule, o.dest_network) for o in hit.outcomes] == [
        ("ignored", "ignore_users:*bot", None)
    ]
    assert daemon.relay is not None
    assert daemon.relay.stats["a"].ignored == 1


async def test_peer_bridge_copy_is_archived_as_ignored_relay_marker(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(body(ignore="[peerbridge]"))
    hub.post("#x", "peerbridge", "<carol@elsewhere> quokka sighting", relayed=True)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(hub.texts("#y")) == 1)
    await settle(daemon)
    assert hub.texts("#y") == ["<alice@a> sentinel"]
    (hit,) = await find(daemon, "quokka")
    assert [(o.action, o.rule) for o in hit.outcomes] == [("ignored", "relay-marker")]


async def test_relay_marker_from_a_person_is_relayed_and_archived_with_the_marker(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(body())
    hub.post("#x", "mallory", "nobody will record this", relayed=True)
    await until(lambda: len(hub.texts("#y")) == 1)
    await settle(daemon)
    assert hub.texts("#y") == ["<mallory@a> nobody will record this"]
    (hit,) = await find(daemon, "record this")
    assert hit.sender == "mallory"
    assert [(o.kind, o.action) for o in hit.outcomes] == [
        ("decision", "allow"),
        ("delivery", "delivered"),
    ]
    store = store_of(daemon)
    (raw,) = await daemon.db.read(lambda conn: list(store.rows(conn, "WHERE seq = ?", (hit.seq,))))
    assert store.body(raw.record)["origin"]["relayed"] is True  # the marker is on the record


async def test_policy_and_room_notices_are_archived_with_their_text(
    start_daemon: StartDaemon,
) -> None:
    policy = '{rules: [{name: no-secrets, action: deny, text: "(?i)secret", notify_sender: true}]}'
    daemon, hub = await start_daemon(
        body(policy=policy, archive='{notice: "This room is bridged and archived."}')
    )
    await until(lambda: any("bridged and archived" in t for t in hub.texts("#y")))
    hub.post("#x", "alice", "the secret plan")
    await until(lambda: any("no-secrets" in t for t in hub.texts("#x")))
    await settle(daemon)
    notices = await find(daemon, "bridged archived")
    assert sorted((h.network, h.room, h.sender) for h in notices) == [
        ("a", "#x", "imbridge"),
        ("b", "#y", "imbridge"),
    ]
    (told,) = await find(daemon, "your message was not relayed")
    assert (told.room, told.sender) == ("#x", "imbridge")
    assert "no-secrets" in told.text
    assert [(o.kind, o.action) for o in told.outcomes] == [("delivery", "delivered")]
    kinds = await rows(
        daemon, "SELECT kind, action, rule FROM archive_records WHERE kind = 'notice'"
    )
    assert sorted(kinds) == [
        ("notice", "policy", "no-secrets"),
        ("notice", "room", "archive.notice"),
        ("notice", "room", "archive.notice"),
    ]


async def test_with_a_key_no_relayed_word_is_in_clear_and_quotes_still_work(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon, hub = await start_daemon(body(archive=f"{{encryption_key: {KEY}}}"))
    original = hub.post("#x", "alice", "wombat figures for Tuesday")
    await until(lambda: len(hub.texts("#y")) == 1)
    copy = hub.in_room("#y")[0]
    hub.post("#y", "bob", "numbat agreed", reply_to=copy.remote_id)
    await until(lambda: len(hub.texts("#x")) == 2)
    assert hub.in_room("#x")[1].reply_to == original.remote_id
    hub.post("#x", "carol", "quokka", kind="reaction", target=original.remote_id)
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.failures.append(PermanentSendError("room gone"))
    hub.post("#x", "alice", "platypus never arrives")
    hub.post("#x", "alice", "sentinel")
    await until(lambda: hub.texts("#y")[-1:] == ["<alice@a> sentinel"])
    await settle(daemon)
    await daemon.db.transact(store_of(daemon).index_pending)
    assert await rows(daemon, "SELECT payload FROM outbox WHERE state = 'failed'") == [("",)]
    sealed = await rows(daemon, "SELECT payload FROM messages")
    assert sealed
    assert all(p.startswith("sealed2:") for (p,) in sealed)
    assert await rows(daemon, "SELECT count(*) FROM reactions") == [(1,)]
    assert found_in_files(tmp_path, ["wombat", "numbat", "platypus", "Tuesday", "quokka"]) == {}
    assert (await find(daemon, "numbat"))[0].sender == "bob"  # the key holder still finds it


async def test_purge_takes_the_relay_copies_and_leaves_no_word_behind(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    archive = "{retention_days: 1, legal_hold: [{name: case-1, user: carol}]}"
    daemon, hub = await start_daemon(body(archive=archive))
    b = daemon.adapters["b"]
    assert isinstance(b, MemoryAdapter)
    b.failures.append(PermanentSendError("room gone"))
    hub.post("#x", "alice", "aardvark failed delivery")
    hub.post("#x", "alice", "axolotl merger terms")
    hub.post("#x", "carol", "capybara under hold")
    await until(lambda: len(hub.texts("#y")) == 2)
    hub.post("#y", "bob", "okapi reply", reply_to=hub.in_room("#y")[0].remote_id)
    await until(lambda: len(hub.texts("#x")) == 4)
    hub.post("#y", "bob", "wallaby", kind="reaction", target=hub.in_room("#y")[1].remote_id)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: hub.texts("#y")[-1:] == ["<alice@a> sentinel"])
    await settle(daemon)
    gone = ["aardvark", "axolotl", "okapi", "wallaby"]
    assert found_in_files(tmp_path, gone)  # on disk before the purge, somewhere

    store = store_of(daemon)
    await daemon.db.transact(store.index_pending)  # the words reach the full-text index
    later = now_us() + 2 * DAY_US
    store.clock = lambda: later  # two days on: retention_days 1 covers all but the hold
    assert daemon.archive is not None
    assert (await daemon.archive.purge()).deleted > 0  # the daemon's daily purge
    assert found_in_files(tmp_path, gone) == {}  # the running daemon's files, WAL too
    assert found_in_files(tmp_path, ["capybara"])  # held: kept
    assert await rows(daemon, "SELECT count(*) FROM outbox WHERE state = 'failed'") == [(0,)]
    held = await rows(daemon, "SELECT DISTINCT event_id FROM idmap")
    assert len(held) == 1  # carol's message and its copy, under the hold
    assert len(await rows(daemon, "SELECT event_id FROM messages")) == 1
    assert await rows(daemon, "SELECT count(*) FROM reactions") == [(0,)]


@pytest.mark.parametrize("relayed", [False, True])
async def test_own_echoes_are_dropped_not_archived(
    start_daemon: StartDaemon, *, relayed: bool
) -> None:
    daemon, hub = await start_daemon(body())
    hub.post("#x", "imbridge", "said by the bridge itself", relayed=relayed)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(hub.texts("#y")) == 1)
    await settle(daemon)
    assert daemon.relay is not None
    assert daemon.relay.stats["a"].dropped_echo == 1
    assert await find(daemon, "itself") == []


def _event(sender: str, *, relayed: bool = False) -> Message:
    origin = Origin(network="a", room="#x", sender=Sender(id=sender, name=sender), relayed=relayed)
    return Message(id=new_event_id(), origin=origin, text="hi")


@pytest.mark.parametrize(
    ("sender", "relayed", "rule"),
    [
        ("relay", False, OWN_ECHO),
        ("relay", True, OWN_ECHO),
        ("pagerbot", False, "ignore_users:*bot"),
        ("pagerbot", True, RELAY_MARKER),
        ("alice", True, None),  # a marker from a person is not trusted
        ("alice", False, None),
    ],
)
def test_screen_trusts_markers_only_from_bots(
    sender: str, *, relayed: bool, rule: str | None
) -> None:
    got = screen(_event(sender, relayed=relayed), identity="relay", ignore_users=["*bot"])
    assert (got.rule if got else None) == rule


def test_sealed_payload_opens_only_in_its_own_row_and_with_the_key() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal('{"text":"wombat"}', table="messages", key="e1")
    assert "wombat" not in sealed
    assert sealer.open(sealed, table="messages", key="e1") == '{"text":"wombat"}'
    with pytest.raises(SealError, match="does not open"):
        sealer.open(sealed, table="messages", key="e2")  # moved to another row
    with pytest.raises(SealError, match=r"encrypted with key [0-9a-f]{16}, which"):
        Sealer("x" * 44).open(sealed, table="messages", key="e1")  # another key
    with pytest.raises(SealError, match="encryption_key_file"):
        Sealer().open(sealed, table="messages", key="e1")
    assert sealer.open("written before the key", table="outbox", key="t") == (
        "written before the key"
    )
    assert Sealer().seal("plain", table="outbox", key="t") == "plain"


async def test_adapter_state_is_sealed_with_the_archive_key(tmp_path: Path) -> None:
    """An adapter's saved state may hold what people wrote (XMPP keeps each person's
    reaction set, and a reaction may be a word): with a key set it is sealed too."""
    async with Database(tmp_path / "state.db") as db:
        cursors = NetworkCursors(db, "xm", Sealer(KEY))
        await cursors.set("rx:ops@conf", '{"alice":["quokka"]}')
        assert await cursors.get("rx:ops@conf") == '{"alice":["quokka"]}'
        raw = await db.read(lambda conn: conn.execute("SELECT value FROM cursors").fetchall())
        assert raw
        assert all("quokka" not in value for (value,) in raw)
        # A cursor written before a key was set still reads back.
        plain = NetworkCursors(db, "mx")
        await plain.set("next_batch", "s72_1")
        assert await NetworkCursors(db, "mx", Sealer(KEY)).get("next_batch") == "s72_1"
        # A sealed value moved to another key does not open.
        await db.transact(
            lambda conn: conn.execute(
                "UPDATE cursors SET value = (SELECT value FROM cursors WHERE key = 'rx:ops@conf') "
                "WHERE key = 'next_batch'"
            )
        )
        with pytest.raises(SealError):
            await NetworkCursors(db, "mx", Sealer(KEY)).get("next_batch")


@pytest.mark.parametrize(
    "text", ["\u200b", "\u200b\u200d \ufeff", "\u3164", " \u2800\u034f\u2060 "]
)
async def test_message_of_invisible_characters_only_is_archived_as_ignored_never_relayed(
    start_daemon: StartDaemon, text: str
) -> None:
    """A Matrix message of U+200B reached IRC as a bare `<alice@matrix> ` line."""
    daemon, hub = await start_daemon(body())
    hub.post("#x", "alice", text)
    hub.post("#x", "alice", "sentinel\u200b")
    await until(lambda: len(hub.texts("#y")) == 1)
    await settle(daemon)
    assert hub.texts("#y") == ["<alice@a> sentinel\u200b"]
    decided = await rows(
        daemon, "SELECT action, rule FROM archive_records WHERE kind = 'decision' ORDER BY seq"
    )
    assert decided[0] == ("ignored", "invisible")
    assert [action for action, _ in decided[1:]] == ["allow"]
