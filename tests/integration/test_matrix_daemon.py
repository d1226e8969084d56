"""Two Matrix rooms relayed through the whole daemon, watched by real matrix-nio users:
what Alice does in one room, Bob sees in the other, with her name, her formatting, her
edits, redactions and replies following the relayed copy, and nothing echoed back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from imbridge.config.load import parse_config
from imbridge.daemon import Daemon
from tests.servers.synapse import MatrixUser, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration


def bridge_yaml(
    state: Path, server: SynapseServer, relay: MatrixUser, rooms: list[str], **network: Any
) -> str:
    """A config for one Matrix network whose rooms form one gateway (JSON is YAML)."""
    return json.dumps(
        {
            "bridge": {"state_dir": str(state), "log": {"level": "warning", "format": "console"}},
            "networks": {
                "mx": {
                    "type": "matrix",
                    "homeserver": server.url,
                    "user_id": relay.user_id,
                    "access_token": relay.access_token,
                    "sync_timeout_ms": 1000,
                    **network,
                }
            },
            "gateways": {
                "g": {
                    "nick_format": "<{nick}@{network}> ",
                    "rooms": [{"network": "mx", "room": r} for r in rooms],
                }
            },
            "archive": {"enabled": False},
        }
    )


class Pair:
    """Alice in room A, Bob in room B, the relay in both."""

    def __init__(self, alice: Watcher, bob: Watcher, relay: MatrixUser, a: str, b: str) -> None:
        self.alice, self.bob, self.relay, self.a, self.b = alice, bob, relay, a, b

    def in_b(self) -> list[dict[str, Any]]:
        return self.bob.messages(self.b, sender=self.relay.user_id)

    def in_a(self) -> list[dict[str, Any]]:
        return self.alice.messages(self.a, sender=self.relay.user_id)


@pytest.fixture
async def pair(synapse: SynapseServer) -> AsyncIterator[Pair]:
    relay = synapse.register()
    async with (
        Watcher(synapse, synapse.register("alice" + relay.user_id[2:8])) as alice,
        Watcher(synapse, synapse.register()) as bob,
    ):
        a = await alice.create_room(invite=[relay.user_id])
        b = await bob.create_room(invite=[relay.user_id])
        yield Pair(alice, bob, relay, a, b)


async def test_matrix_rooms_relay_text_formatting_edits_redactions_replies(
    synapse: SynapseServer, pair: Pair, tmp_path: Path
) -> None:
    config = parse_config(bridge_yaml(tmp_path, synapse, pair.relay, [pair.a, pair.b]))
    async with Daemon(config) as daemon:
        assert await daemon.ready(30)
        alice, bob = pair.alice, pair.bob
        first = await alice.text(
            pair.a,
            "hello **bob**",
            format="org.matrix.custom.html",
            formatted_body='hello <b>bob</b><img src=x onerror="alert(1)">'
            '<a href="javascript:alert(1)">x</a><script>evil()</script>',
        )
        await alice.send(pair.a, {"msgtype": "m.emote", "body": "waves"})
        await wait_for(lambda: len(pair.in_b()) >= 2, what="text and emote in B")
        text, emote = pair.in_b()[:2]
        name = alice.user.user_id[1:].split(":")[0]
        assert text["content"]["body"] == f"<{name}@mx> hello **bob**"
        html = text["content"]["formatted_body"]
        assert "<b>bob</b>" in html
        for bad in ("<script", "onerror", "javascript:", "evil()", "<img"):
            assert bad not in html
        assert emote["content"]["msgtype"] == "m.emote"
        assert emote["content"]["body"].endswith("waves")
        relayed_first = text["event_id"]

        # Alice edits and Bob replies: the edit follows the relayed copy, the reply the
        # original, in the other direction.
        await alice.send(
            pair.a,
            {
                "msgtype": "m.text",
                "body": "* hello again",
                "m.new_content": {"msgtype": "m.text", "body": "hello again"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": first},
            },
        )
        await bob.text(
            pair.b,
            "> quoted\n\nyes?",
            **{"m.relates_to": {"m.in_reply_to": {"event_id": relayed_first}}},
        )
        edit = (await wait_for(lambda: pair.in_b()[2:], what="edit in B"))[0]
        assert edit["content"]["m.relates_to"] == {
            "rel_type": "m.replace",
            "event_id": relayed_first,
        }
        assert edit["content"]["m.new_content"]["body"].endswith("hello again")
        reply = (await wait_for(pair.in_a, what="reply in A"))[0]
        assert reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == first
        assert "quoted" not in reply["content"]["body"]

        # Alice redacts her message: the relayed copy goes too.
        await alice.client.room_redact(pair.a, first)

        def redacted() -> bool:
            return any(
                e["type"] == "m.room.redaction" and e.get("redacts") == relayed_first
                for e in bob.events.get(pair.b, [])
            )

        await wait_for(redacted, what="redaction in B")
        # No echo: nothing Alice said came back into her own room. A copy relayed back
        # would come from B before Bob's sentinel, which B's order keeps.
        await bob.text(pair.b, "sentinel from bob")
        await wait_for(
            lambda: any("sentinel from bob" in m["content"]["body"] for m in pair.in_a()),
            what="Bob's sentinel in A",
        )
        bodies = [m["content"]["body"] for m in pair.in_a()]
        assert len(bodies) == 2, bodies
        assert bodies[0] == reply["content"]["body"]
        assert bodies[1].endswith("@mx> sentinel from bob")


def _bridge_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "imbridge"), "run", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _relay_joined(w: Watcher, room: str, relay: str) -> bool:
    return any(
        e["type"] == "m.room.member"
        and e.get("state_key") == relay
        and e["content"].get("membership") == "join"
        for e in w.events.get(room, [])
    )


async def test_matrix_bridge_killed_mid_stream_delivers_each_message_once_in_order(
    synapse: SynapseServer, pair: Pair, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(bridge_yaml(tmp_path / "state", synapse, pair.relay, [pair.a, pair.b]))
    log = tmp_path / "bridge.log"
    proc = _bridge_process(config, log)
    try:
        await wait_for(
            lambda: (
                _relay_joined(pair.alice, pair.a, pair.relay.user_id)
                and _relay_joined(pair.bob, pair.b, pair.relay.user_id)
            ),
            timeout=30,
            what="relay in both rooms",
        )
        for i in range(1, 201):
            await pair.alice.text(pair.a, f"n{i}")
            if i == 70:
                # Killed while messages are in flight both ways (read and queued).
                await wait_for(lambda: len(pair.in_b()) >= 20, timeout=20, what="some relayed")
                proc.kill()
                proc.wait()
            if i == 140:
                proc = _bridge_process(config, log)
        want = [f"n{i}" for i in range(1, 201)]

        def bodies() -> list[str]:
            return [m["content"]["body"].rsplit(" ", 1)[-1] for m in pair.in_b()]

        await wait_for(lambda: len(bodies()) >= 200, timeout=60, what="200 in B")
        # A sentinel after them: a duplicate of any of the 200 would arrive before it.
        await pair.alice.text(pair.a, "n201")
        await wait_for(lambda: "n201" in bodies(), timeout=30, what="the sentinel in B")
        assert bodies() == [*want, "n201"], log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


async def test_matrix_300_burst_under_stock_limits_arrives_in_full_in_order(
    synapse_limited: SynapseServer, tmp_path: Path
) -> None:
    server = synapse_limited
    admin, relay = server.register(admin=True), server.register()
    alice_user, bob_user = server.register(), server.register()
    for user in (alice_user, bob_user):  # the users are exempt; the relay is not
        server.api(
            "POST",
            f"/_synapse/admin/v1/users/{user.user_id}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
            token=admin.access_token,
        )
    async with Watcher(server, alice_user) as alice, Watcher(server, bob_user) as bob:
        a = await alice.create_room(invite=[relay.user_id])
        b = await bob.create_room(invite=[relay.user_id])
        # No pacing by the bridge: every throttle the relay meets is the homeserver's 429.
        yaml = bridge_yaml(
            tmp_path, server, relay, [a, b], rate_limit={"per_second": 10_000, "burst": 10_000}
        )
        async with Daemon(parse_config(yaml)) as daemon:
            assert await daemon.ready(30)
            for i in range(300):
                await alice.text(a, f"b{i}")

            def bodies() -> list[str]:
                msgs = bob.messages(b, sender=relay.user_id)
                return [m["content"]["body"].rsplit(" ", 1)[-1] for m in msgs]

            await wait_for(lambda: len(bodies()) >= 300, timeout=120, what="300 in B")
            assert bodies() == [f"b{i}" for i in range(300)]
    limited = [
        line
        for line in (server.state / "homeserver.log").read_text().splitlines()
        if " 429 " in line and "/send/m.room.message/" in line
    ]
    assert limited, "the homeserver never throttled the relay: the test proved nothing"
