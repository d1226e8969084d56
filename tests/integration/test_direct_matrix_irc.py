"""Direct messages between IRC and Matrix (appservice mode), against real ngircd and
Synapse: an IRC user writes to the relay naming a Matrix user and a portal opens with
their ghost; a Matrix user invites an IRC user's ghost and what they write reaches that
nick; answers come back both ways, policy holds them back (and says so), and every one
is in the archive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.testing import archive_hits as search
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.synapse import Appservice, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

PUSHED = 30.0
"""Seconds to wait for what the homeserver pushes (see test_matrix_appservice)."""


@dataclass(frozen=True, slots=True)
class Scene:
    daemon: Daemon
    config: Path
    alice: Watcher
    ivan: IrcUser
    relay: str
    """The relay's IRC nick."""
    room: str
    chan: str


@asynccontextmanager
async def _bridged(
    synapse_appservice: tuple[SynapseServer, Appservice],
    ngircd: Ircd,
    tmp_path: Path,
    tag: str,
    policy: dict[str, Any] | None = None,
) -> AsyncIterator[Scene]:
    synapse, setup = synapse_appservice
    chan = ngircd.channel(tag)
    ivan = await IrcUser.connect(ngircd, "ivan")
    try:
        await ivan.join(chan)
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[setup.bot])
            path = tmp_path / "bridge.yaml"
            path.write_text(json.dumps({
                "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"},
                           "http": {"listen": setup.listen}},
                "networks": {"mx": setup.network(), "irc": ngircd.network()},
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "irc", "room": chan}]}},
                "archive": {"retention_days": 30},
                **({"policy": policy} if policy else {}),
            }))  # fmt: skip
            async with Daemon(load_config(path)) as daemon:
                assert await daemon.ready(30)
                await alice.text(room, "warm-up")
                await wait_for(lambda: ivan.messages(chan), what="warm-up -> IRC", timeout=PUSHED)
                ivan.seen.clear()
                relay = daemon.adapters["irc"].identity
                yield Scene(daemon, path, alice, ivan, relay, room, chan)
    finally:
        await ivan.close()


def private_lines(ivan: IrcUser, relay: str) -> list[str]:
    """What the relay said to ivan alone (PRIVMSG or NOTICE to his nick)."""
    return [
        s.text
        for s in ivan.seen
        if s.kind in ("privmsg", "privnotice") and s.nick == relay and s.target == ivan.nick
    ]


async def _accept_invite(alice: Watcher) -> str:
    """The portal a ghost invited alice to, joined."""
    invited = await wait_for(
        lambda: list(alice.client.invited_rooms), what="portal invite", timeout=PUSHED
    )
    return await alice.join(invited[0])


async def test_irc_user_writes_to_a_matrix_user_through_a_portal_and_hears_back(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "dmirc") as scene:
        alice, ivan, relay = scene.alice, scene.ivan, scene.relay
        me = alice.user.user_id
        ghost = setup.ghost("irc", ivan.nick)
        ivan.say(relay, f"{me} psst, a word in private")
        portal = await _accept_invite(alice)
        got = await wait_for(lambda: alice.bodies(portal, sender=ghost), what="DM -> portal")
        assert got == ["psst, a word in private"]  # no address, no prefix: the ghost says it
        assert alice.bodies(scene.room) == ["warm-up"]  # the bridged room saw nothing

        await alice.text(portal, "yes?")
        said = await wait_for(lambda: private_lines(ivan, relay), what="portal -> IRC query")
        localpart = me[1:].split(":")[0]
        assert said == [f"<{localpart}@mx> yes?"]

        # ivan answers the relay without naming anyone: it goes back to the portal
        ivan.say(relay, "meet at noon")
        got = await wait_for(
            lambda: alice.bodies(portal, sender=ghost)[1:], what="answer -> portal"
        )
        assert got == ["meet at noon"]
        assert list(alice.client.invited_rooms) == []  # the same portal, not a second one

    hits = await asyncio.to_thread(search, scene.config, "private")
    (dm,) = hits
    decisions = [o for o in dm["outcomes"] if o["kind"] == "decision"]
    assert [(o["dest_network"], o["dest_room"], o["action"]) for o in decisions] == [
        ("mx", me, "allow")
    ]
    (answer,) = await asyncio.to_thread(search, scene.config, "yes")
    assert answer["sender"] == me


async def test_matrix_user_invites_an_irc_ghost_and_writes_to_that_nick(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "dmmx") as scene:
        alice, ivan, relay = scene.alice, scene.ivan, scene.relay
        ghost = setup.ghost("irc", ivan.nick)
        ivan.say(scene.chan, "I am here")  # his ghost speaks once in the room
        await wait_for(lambda: alice.messages(scene.room, sender=ghost), what="IRC -> ghost")

        portal = await alice.create_room(invite=[ghost], is_direct=True)
        await wait_for(
            lambda: any(
                e.get("type") == "m.room.member"
                and e.get("state_key") == ghost
                and e["content"].get("membership") == "join"
                for e in alice.events.get(portal, [])
            ),
            what="the ghost joins the portal",
            timeout=PUSHED,
        )
        await alice.text(portal, "just between us")
        said = await wait_for(lambda: private_lines(ivan, relay), what="portal -> IRC")
        assert said[0].endswith("@mx> just between us")
        assert scene.alice.user.user_id[1:].split(":")[0] in said[0]

        ivan.say(relay, "sure thing")
        got = await wait_for(lambda: alice.bodies(portal, sender=ghost), what="reply -> portal")
        assert got == ["sure thing"]


def _joined(alice: Watcher, room: str, user: str) -> bool:
    return any(
        e.get("type") == "m.room.member"
        and e.get("state_key") == user
        and e["content"].get("membership") == "join"
        for e in alice.events.get(room, [])
    )


async def test_a_deny_policy_keeps_a_direct_message_back_and_tells_the_sender(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    policy = {
        "default": "deny",
        "rules": [{"name": "rooms", "action": "allow", "to": {"direct": False}}],
    }
    async with _bridged(synapse_appservice, ngircd, tmp_path, "dmdeny", policy) as scene:
        alice, ivan, relay = scene.alice, scene.ivan, scene.relay
        ivan.say(relay, f"{alice.user.user_id} this must not pass")
        said = await wait_for(lambda: private_lines(ivan, relay), what="refusal notice")
        assert "was not delivered" in said[0]
        assert "default" in said[0]
        ivan.say(scene.chan, "sentinel")  # rooms still relay, and after the DM
        await wait_for(lambda: alice.bodies(scene.room)[1:], what="sentinel", timeout=PUSHED)
        assert list(alice.client.invited_rooms) == []  # no portal was opened

        # From Matrix too: alice's portal with ivan's ghost opens, her words stay there
        ghost = setup.ghost("irc", ivan.nick)
        portal = await alice.create_room(invite=[ghost], is_direct=True)
        await wait_for(lambda: _joined(alice, portal, ghost), what="ghost joins", timeout=PUSHED)
        await alice.text(portal, "nor must this")
        told = await wait_for(lambda: alice.bodies(portal, sender=ghost), what="refusal")
        assert "was not delivered" in told[0]
        ivan.say(relay, "sentinel to nobody")  # the relay answers it: IRC still hears the relay
        await wait_for(lambda: private_lines(ivan, relay)[1:], what="ivan's sentinel answer")
        assert not any("nor must" in line for line in private_lines(ivan, relay))

    hits = await asyncio.to_thread(search, scene.config, "must")
    assert sorted(h["text"] for h in hits) == ["nor must this", "this must not pass"]
    for dm in hits:
        decisions = [o for o in dm["outcomes"] if o["kind"] == "decision"]
        assert [(o["action"], o["rule"]) for o in decisions] == [("deny", "default")]


async def test_the_next_direct_message_after_a_restart_reuses_the_portal(
    synapse_appservice: tuple[SynapseServer, Appservice], ngircd: Ircd, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, ngircd, tmp_path, "dmagain") as scene:
        alice, ivan, relay = scene.alice, scene.ivan, scene.relay
        me = alice.user.user_id
        ghost = setup.ghost("irc", ivan.nick)
        ivan.say(relay, f"{me} before the restart")
        portal = await _accept_invite(alice)
        await wait_for(lambda: alice.bodies(portal, sender=ghost), what="DM -> portal")
        await scene.daemon.stop()
        async with Daemon(load_config(scene.config)) as daemon:
            assert await daemon.ready(30)
            ivan.say(relay, f"{me} after the restart")
            got = await wait_for(
                lambda: alice.bodies(portal, sender=ghost)[1:], what="DM -> same portal"
            )
            assert got == ["after the restart"]
            assert list(alice.client.invited_rooms) == []
            assert portal in alice.client.rooms
