"""Capture on the relay path through the whole daemon on a real IRC server (InspIRCd,
which passes client tags such as relay markers on), as a compliance officer checks it:
a bot listed in `ignore_users` is not relayed but `archive search` finds it; a line a
person marked as relayed is relayed and archived all the same; the bridge's own notices
are on the record with their text; with a key no relayed word is in clear anywhere in
`state_dir`; and after a purge no word of a purged message is left there."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imbridge.archive.retention import DAY_US
from imbridge.archive.store import now_us
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser, eventually

pytestmark = pytest.mark.integration

KEY = "q" * 44


def command(name: str, *args: Any, **kw: Any) -> tuple[int, str]:
    module = importlib.import_module("imbridge.commands.archive")
    out, err = io.StringIO(), io.StringIO()
    code = getattr(module, name)(*args, out=out, err=err, **kw)
    return int(code), out.getvalue() + err.getvalue()


def word() -> str:
    """A word no other test, nick or channel contains."""
    return "w" + secrets.token_hex(5)


def found_in(state_dir: Path, words: list[str]) -> dict[str, list[str]]:
    """Which of `words` occur, as bytes, in which file of `state_dir` (WAL included)."""
    hits: dict[str, list[str]] = {}
    for path in sorted(state_dir.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            present = [w for w in words if w.encode() in data]
            if present:
                hits[path.name] = present
    return hits


@dataclass
class Rooms:
    server: Ircd
    alice: IrcUser
    bob: IrcUser
    a: str
    b: str

    def config(self, tmp_path: Path, *, archive: dict[str, Any], **extra: Any) -> Path:
        path = tmp_path / "bridge.yaml"
        body = {
            "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"}},
            "networks": {"irc": self.server.network(**extra)},
            "gateways": {"g": {"rooms": [{"network": "irc", "room": r} for r in (self.a, self.b)]}},
            "archive": archive,
        }
        path.write_text(json.dumps(body))
        return path

    async def relayed(self, text: str) -> None:
        """Until Bob sees `text` relayed into his channel."""
        await eventually(
            lambda: any(text in t for t in self.bob.texts(self.b, "relay")), what=f"{text!r}"
        )


@pytest.fixture
async def rooms(inspircd: Ircd) -> AsyncIterator[Rooms]:
    alice, bob = await asyncio.gather(
        IrcUser.connect(inspircd, "alice"), IrcUser.connect(inspircd, "bob")
    )
    a, b = inspircd.channel("cap"), inspircd.channel("cap")
    try:
        await asyncio.gather(alice.join(a), bob.join(b))
        yield Rooms(inspircd, alice, bob, a, b)
    finally:
        await alice.close()
        await bob.close()


async def search(path: Path, text: str) -> list[dict[str, Any]]:
    code, out = await asyncio.to_thread(command, "archive_search", path, text, fmt="json")
    assert code == 0, out
    hits: list[dict[str, Any]] = json.loads(out)
    return hits


async def test_ignore_users_sender_is_not_relayed_and_archive_search_finds_it(
    rooms: Rooms, tmp_path: Path
) -> None:
    bot = await IrcUser.connect(rooms.server, "pagerbot")
    said = word()
    try:
        await bot.join(rooms.a)
        path = rooms.config(tmp_path, archive={}, ignore_users=["pagerbot*"])
        async with Daemon(load_config(path)) as daemon:
            assert await daemon.ready(30)
            bot.say(rooms.a, f"disk full on {said}")
            rooms.alice.say(rooms.a, "sentinel after the bot")
            await rooms.relayed("sentinel after the bot")
            assert not any(said in t for t in rooms.bob.texts(rooms.b))
    finally:
        await bot.close()
    (hit,) = await search(path, said)
    assert hit["sender"] == bot.nick
    assert [(o["kind"], o["action"], o["rule"]) for o in hit["outcomes"]] == [
        ("decision", "ignored", "ignore_users:pagerbot*")
    ]
    assert (await asyncio.to_thread(command, "archive_verify", path))[0] == 0


async def test_relay_marked_line_from_a_person_is_relayed_and_archived(
    rooms: Rooms, tmp_path: Path
) -> None:
    said = word()
    path = rooms.config(tmp_path, archive={})
    async with Daemon(load_config(path)) as daemon:
        assert await daemon.ready(30)
        # What another bridge would add; here a person adds it to hide the line. The
        # server passes client tags on only from a client that negotiated them.
        rooms.alice.raw("CAP REQ :message-tags")
        rooms.alice.raw(f"@+draft/relay=x PRIVMSG {rooms.a} :keep {said} off the record")
        await rooms.relayed(said)
    (hit,) = await search(path, said)
    assert hit["sender"] == rooms.alice.nick
    assert ("decision", "allow") in [(o["kind"], o["action"]) for o in hit["outcomes"]]
    code, out = await asyncio.to_thread(
        command, "archive_export", path, fmt="jsonl", output=tmp_path / "x.jsonl"
    )
    assert code == 0, out
    lines = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    (line,) = [x for x in lines if said in x["event"].get("text", "")]
    assert line["event"]["origin"]["relayed"] is True  # the marker is noted


async def test_bridge_notices_are_archived_with_their_text(rooms: Rooms, tmp_path: Path) -> None:
    notice = f"This room is bridged and archived {word()}"
    path = rooms.config(tmp_path, archive={"notice": notice})
    body = json.loads(path.read_text())
    body["policy"] = {
        "rules": [
            {"name": "no-classified", "action": "deny", "text": "(?i)classified",
             "notify_sender": True}
        ]
    }  # fmt: skip
    path.write_text(json.dumps(body))
    async with Daemon(load_config(path)) as daemon:
        assert await daemon.ready(30)
        await eventually(lambda: notice in rooms.alice.texts(rooms.a), what="room notice")
        rooms.alice.say(rooms.a, "classified figures")
        await eventually(
            lambda: any("no-classified" in t for t in rooms.alice.texts(rooms.a, "relay")),
            what="policy notice to alice",
        )
        await eventually(
            lambda: daemon.outbox is not None and daemon.outbox.depth() == 0, what="sent"
        )
    room_notices = await search(path, notice)
    assert sorted(h["room"] for h in room_notices) == sorted([rooms.a, rooms.b])
    assert all(h["sender"] == "imbridge" and h["text"] == notice for h in room_notices)
    (told,) = await search(path, "your message was not relayed")
    assert told["room"] == rooms.a
    assert "no-classified" in told["text"]


async def test_with_a_key_no_relayed_word_is_in_clear_in_state_dir(
    rooms: Rooms, tmp_path: Path
) -> None:
    said = [word() for _ in range(4)]
    path = rooms.config(tmp_path, archive={"encryption_key": KEY})
    state = tmp_path / "state"
    async with Daemon(load_config(path)) as daemon:
        assert await daemon.ready(30)
        rooms.alice.say(rooms.a, f"{said[0]} and {said[1]}")
        rooms.bob.say(rooms.b, f"{said[2]} then {said[3]}")
        await rooms.relayed(said[0])
        await eventually(
            lambda: any(said[3] in t for t in rooms.alice.texts(rooms.a, "relay")), what="B->A"
        )
        assert daemon.archive is not None
        await daemon.archive.index()
        assert (state / "imbridge.db-wal").exists()
        assert found_in(state, said) == {}  # running: database, WAL, head file
    assert found_in(state, said) == {}
    assert (await search(path, said[2]))[0]["sender"] == rooms.bob.nick  # the key holder finds it


async def test_after_a_purge_no_word_of_a_purged_message_is_left_in_state_dir(
    rooms: Rooms, tmp_path: Path
) -> None:
    said = [word() for _ in range(4)]
    path = rooms.config(tmp_path, archive={"retention_days": 1})
    state = tmp_path / "state"
    async with Daemon(load_config(path)) as daemon:
        assert await daemon.ready(30)
        rooms.alice.say(rooms.a, f"{said[0]} and {said[1]}")
        await rooms.relayed(said[0])
        rooms.bob.say(rooms.b, f"re {said[2]} {said[3]}")
        await eventually(
            lambda: any(said[3] in t for t in rooms.alice.texts(rooms.a, "relay")), what="B->A"
        )
        assert daemon.archive is not None
        await daemon.archive.index()
        assert found_in(state, said)  # on disk before the purge
        later = now_us() + 2 * DAY_US
        daemon.archive.store.clock = lambda: later  # two days on, retention_days 1
        assert (await daemon.archive.purge()).deleted > 0
        assert found_in(state, said) == {}  # the running daemon's files, WAL included
        rooms.alice.say(rooms.a, "after the purge")  # and it relays on
        await rooms.relayed("after the purge")
    assert found_in(state, said) == {}
