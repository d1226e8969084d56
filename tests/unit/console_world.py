"""A review console over a small archive, for the console's unit tests: three accounts
(one per role), messages recorded through the archive store as the relay path records
them (one flagged by a lexicon, one denied, one carrying a stored attachment), and an
aiohttp client that signs in through the login form like a browser."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from imbridge.archive.files import FileStore
from imbridge.archive.store import ArchiveStore
from imbridge.config import parse_config
from imbridge.config.schema import Config
from imbridge.console.app import Console, build_app, open_database
from imbridge.console.users import Role, UserStore
from imbridge.events import Attachment, EventId, Message, Origin, RemoteId, Sender
from imbridge.policy import compile_policy, decide
from tests.unit.policy_cases import dest

PASSWORD = "correct horse battery"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
CONFIG = """
networks: {corp: {type: memory}, ext: {type: memory}}
gateways: {g: {rooms: [{network: corp, room: "#desk"}, {network: ext, room: "#out"}]}}
policy:
  lexicons: {insider: {words: ["inside information"]}}
  rules:
    - {name: insider-words, action: flag, lexicons: [insider]}
    - {name: no-secrets, action: deny, text: secret}
archive: {log_checkpoints: false}
console: {enabled: true}
"""
# A fast argon2id profile: the tests check the flow, not the cost.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class World:
    config: Config
    store: ArchiveStore
    ids: dict[str, str]
    client: TestClient[web.Request, web.Application]
    console: Console

    async def login(self, name: str, password: str = PASSWORD) -> int:
        page = await self.client.get("/console/login")
        token = csrf_of(await page.text())
        resp = await self.client.post(
            "/console/login",
            data={"username": name, "password": password, "csrf": token, "next": ""},
            allow_redirects=False,
        )
        return resp.status

    async def csrf(self, path: str = "/console/overview") -> str:
        return csrf_of(await (await self.client.get(path)).text())

    def records(self, kind: str) -> list[tuple[str, str, str]]:
        conn = sqlite3.connect(self.config.bridge.state_dir / "imbridge.db")
        try:
            return [
                (str(a), str(s), str(b))
                for a, s, b in conn.execute(
                    "SELECT action, sender, body FROM archive_records WHERE kind = ? ORDER BY seq",
                    (kind,),
                )
            ]
        finally:
            conn.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def message(i: int, text: str, *, sender: str = "alice", **kw: object) -> Message:
    when = datetime(2024, 5, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=i)
    origin = Origin(
        network="corp",
        room="#desk",
        sender=Sender(id=sender, name=sender.title()),
        remote_id=RemoteId(f"r{i}"),
        timestamp=when,
    )
    return Message(id=EventId(f"ev{i}"), origin=origin, text=text, **kw)  # type: ignore[arg-type]


def seed(config: Config, store: ArchiveStore) -> dict[str, str]:
    """Records events as the relay does; returns their ids by what they are."""
    policy = compile_policy(config.policy)
    files = FileStore.for_archive(config.archive, config.bridge.state_dir)
    stored = files.put(b"quarterly figures\n")
    events = {
        "plain": message(1, "good morning desk"),
        "flagged": message(2, "I have inside information about the merger"),
        "denied": message(3, "the secret merger figures"),
        "hostile": message(4, HOSTILE, sender="mallory"),
        "file": message(
            5,
            "figures attached",
            attachments=(
                Attachment(url="https://x/f.txt", name="f.txt", mimetype="text/plain", size=18),
            ),
        ),
    }
    conn = sqlite3.connect(config.bridge.state_dir / "imbridge.db", isolation_level=None)
    try:
        conn.execute("BEGIN")
        for event in events.values():
            to = dest("ext:#out")
            store.record_event(conn, event, [(to, decide(event, to, policy))])
        seq = conn.execute(
            "SELECT seq FROM archive_records WHERE event_id = 'ev5' AND kind = 'event'"
        ).fetchone()[0]
        store.append(
            conn,
            [
                {
                    "kind": "file",
                    "event_id": "ev5",
                    "network": "corp",
                    "room": "#desk",
                    "sender": "alice",
                    "action": "stored",
                    "body": {
                        "index": 0,
                        "name": "f.txt",
                        "mimetype": "text/plain",
                        "sha256": stored.sha256,
                        "size": stored.size,
                        "status": "stored",
                        "event_seq": seq,
                    },
                }
            ],
        )
        conn.execute("COMMIT")
        store.index_pending(conn)
    finally:
        conn.close()
    return {k: str(e.id) for k, e in events.items()}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config = parse_config(f"bridge: {{state_dir: '{tmp_path}'}}\n{CONFIG}")
    users = UserStore(tmp_path, hasher=FAST)
    for role in Role:
        users.add(role.label, role, PASSWORD)
    db = open_database(config)
    await db.open()
    store = ArchiveStore(config.archive, state_dir=tmp_path)
    ids = seed(config, store)
    console = Console(config, db, store)
    root = web.Application()
    root.add_subapp("/console/", build_app(console))
    client = TestClient(TestServer(root))
    await client.start_server()
    try:
        yield World(config, store, ids, client, console)
    finally:
        await client.close()
        await db.aclose()
