"""Direct messages between XMPP (component mode) and Matrix (appservice mode), against
real Prosody and Synapse: an XMPP user writes to the puppet JID of a Matrix user and a
portal opens on Matrix with their ghost; the Matrix user's answer comes back as a chat
from that same puppet JID; a Matrix user who invites the XMPP user's ghost to a room of
their own reaches them the same way; each one is archived."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from imbridge import testing
from imbridge.adapters.xmpp.puppets import localpart
from imbridge.config.load import load_config
from imbridge.daemon import Daemon
from imbridge.testing import archive_hits as search
from tests.integration.test_xmpp_capture import Person
from tests.servers.prosody import Prosody
from tests.servers.synapse import Appservice, SynapseServer, Watcher, wait_for

pytestmark = pytest.mark.integration

PUSHED = 30.0
"""Seconds to wait for what the homeserver pushes (see test_matrix_appservice)."""


@dataclass(frozen=True, slots=True)
class Scene:
    config: Path
    alice: Watcher
    carol: Person
    puppet: str
    """The JID alice is on XMPP: her component puppet (in client mode, the relay's)."""


@asynccontextmanager
async def _bridged(
    synapse_appservice: tuple[SynapseServer, Appservice],
    prosody: Prosody,
    tmp_path: Path,
    *,
    client_mode: bool = False,
) -> AsyncIterator[Scene]:
    synapse, setup = synapse_appservice
    muc = prosody.room("dmxmpp")
    jid, password = await asyncio.to_thread(prosody.register)
    carol = Person(prosody, jid, password)
    await carol.connect()
    try:
        await carol.join(muc, "carol")
        async with Watcher(synapse, synapse.register()) as alice:
            room = await alice.create_room(invite=[setup.bot])
            path = tmp_path / "bridge.yaml"
            xmpp = {"type": "xmpp", "mode": "component", "component": prosody.component_domain,
                    "secret": prosody.component_secret, "host": prosody.host,
                    "port": prosody.component_port, "nick": "relay", "ack_timeout": 5}  # fmt: skip
            if client_mode:
                relay_jid, relay_password = await asyncio.to_thread(prosody.register)
                xmpp = testing.xmpp_network(prosody, relay_jid, relay_password, ack_timeout=5)
            path.write_text(json.dumps({
                "bridge": {"state_dir": str(tmp_path / "state"), "log": {"level": "warning"},
                           "http": {"listen": setup.listen}},
                "networks": {"mx": setup.network(), "xm": xmpp},
                "gateways": {"g": {"rooms": [{"network": "mx", "room": room},
                                             {"network": "xm", "room": muc}]}},
                "archive": {"retention_days": 30},
            }))  # fmt: skip
            async with Daemon(load_config(path)) as daemon:
                assert await daemon.ready(30)
                await alice.text(room, "warm-up")
                await wait_for(lambda: carol.bodies(muc), what="warm-up -> XMPP", timeout=PUSHED)
                puppet = f"{localpart(alice.user.user_id, 'mx')}@{prosody.component_domain}"
                if client_mode:
                    puppet = daemon.adapters["xm"].identity.partition("/")[0]
                yield Scene(path, alice, carol, puppet)
    finally:
        await carol.close()


async def test_xmpp_user_writes_to_a_matrix_users_puppet_and_the_answer_comes_from_it(
    synapse_appservice: tuple[SynapseServer, Appservice], prosody: Prosody, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, prosody, tmp_path) as scene:
        alice, carol, puppet = scene.alice, scene.carol, scene.puppet
        ghost = setup.ghost("xm", str(carol.client.boundjid.bare))
        carol.chat(puppet, "hello alice, privately")
        invited = await wait_for(
            lambda: list(alice.client.invited_rooms), what="portal invite", timeout=PUSHED
        )
        portal = await alice.join(invited[0])
        got = await wait_for(lambda: alice.bodies(portal, sender=ghost), what="chat -> portal")
        assert got == ["hello alice, privately"]

        await alice.text(portal, "hi carol")
        answers = await wait_for(lambda: carol.answers(puppet), what="portal -> XMPP chat")
        assert answers == ["hi carol"]  # from her puppet, with no prefix: it says who

        # alice opens a second conversation herself, inviting carol's ghost
        own = await alice.create_room(invite=[ghost], is_direct=True)
        await wait_for(
            lambda: any(
                e.get("type") == "m.room.member"
                and e.get("state_key") == ghost
                and e["content"].get("membership") == "join"
                for e in alice.events.get(own, [])
            ),
            what="the ghost joins alice's room",
            timeout=PUSHED,
        )
        await alice.text(own, "from my own room")
        await wait_for(lambda: carol.answers(puppet)[1:], what="second portal -> XMPP chat")
        assert carol.answers(puppet) == ["hi carol", "from my own room"]

    (dm,) = await asyncio.to_thread(search, scene.config, "privately")
    decisions = [o for o in dm["outcomes"] if o["kind"] == "decision"]
    assert [(o["dest_network"], o["dest_room"], o["action"]) for o in decisions] == [
        ("mx", alice.user.user_id, "allow")
    ]
    assert len(await asyncio.to_thread(search, scene.config, "own room")) == 1


async def test_in_client_mode_an_xmpp_user_names_a_matrix_user_to_the_relay(
    synapse_appservice: tuple[SynapseServer, Appservice], prosody: Prosody, tmp_path: Path
) -> None:
    _, setup = synapse_appservice
    async with _bridged(synapse_appservice, prosody, tmp_path, client_mode=True) as scene:
        alice, carol, relay = scene.alice, scene.carol, scene.puppet
        ghost = setup.ghost("xm", str(carol.client.boundjid.bare))
        carol.chat(relay, f"{alice.user.user_id} hello from the relay's chat")
        invited = await wait_for(
            lambda: list(alice.client.invited_rooms), what="portal invite", timeout=PUSHED
        )
        portal = await alice.join(invited[0])
        got = await wait_for(lambda: alice.bodies(portal, sender=ghost), what="chat -> portal")
        assert got == ["hello from the relay's chat"]

        await alice.text(portal, "hi carol")
        answers = await wait_for(lambda: carol.answers(relay), what="portal -> relay chat")
        localpart_ = alice.user.user_id[1:].split(":")[0]
        assert answers == [f"<{localpart_}@mx> hi carol"]  # the relay names who wrote
