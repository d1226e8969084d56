"""A reload that removes rooms from the config leaves them, on every network, as the
people sitting in them see it: an IRC PART, the relay gone from the MUC's occupants,
the relay's account no longer a member of the Matrix room. Rooms still configured are
not touched, and relaying goes on there."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import slixmpp

from tests.integration.fault_helpers import (
    BridgeProcess,
    config_text,
    irc_network,
    matrix_network,
    poll,
    xmpp_network,
)
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody, XmppUser
from tests.servers.synapse import SynapseServer, Watcher

pytestmark = pytest.mark.integration


def relay_in(user: IrcUser, channel: str) -> list[str]:
    """The relay's JOIN and PART lines in `channel`, as `user` saw them."""
    return [
        s.kind
        for s in user.seen
        if s.nick.startswith("relay")
        and s.kind in ("join", "part")
        and s.target.lower() == channel.lower()
    ]


def occupants(user: XmppUser, room: str) -> list[str]:
    return list(user.client.plugin["xep_0045"].get_roster(slixmpp.JID(room)) or [])


async def test_reload_leaves_removed_rooms_on_irc_xmpp_and_matrix(
    ngircd: Ircd, prosody: Prosody, synapse: SynapseServer, tmp_path: Path
) -> None:
    relay_jid, relay_pw = await asyncio.to_thread(prosody.register)
    relay_mx = await asyncio.to_thread(synapse.register)
    maria_mx = await asyncio.to_thread(synapse.register)
    keep_irc, gone_irc = ngircd.channel("keep"), ngircd.channel("gone")
    keep_xm, gone_xm = prosody.room("keep"), prosody.room("gone")
    networks: dict[str, dict[str, Any]] = {
        "irc": irc_network(ngircd),
        "xm": xmpp_network(prosody, relay_jid, relay_pw),
        "mx": matrix_network(synapse, relay_mx),
    }
    async with contextlib.AsyncExitStack() as stack:
        maria = await stack.enter_async_context(Watcher(synapse, maria_mx))
        gone_mx = await maria.create_room(invite=[relay_mx.user_id])
        await asyncio.to_thread(
            synapse.api, "POST", f"/_matrix/client/v3/join/{gone_mx}", {},
            token=relay_mx.access_token,
        )  # fmt: skip
        state = tmp_path / "state"
        both = {
            "keep": [("irc", keep_irc), ("xm", keep_xm)],
            "gone": [("irc", gone_irc), ("xm", gone_xm), ("mx", gone_mx)],
        }
        config = tmp_path / "bridge.yaml"
        config.write_text(config_text(state, networks, both))
        ivan = await IrcUser.connect(ngircd, "ivan")
        stack.push_async_callback(ivan.close)
        xavier = await XmppUser.login(prosody)
        stack.push_async_callback(xavier.close)
        await ivan.join(keep_irc)
        await ivan.join(gone_irc)
        await xavier.join(keep_xm, "xavier")
        await xavier.join(gone_xm, "xavier")
        bridge = BridgeProcess(config, tmp_path / "bridge.log")
        bridge.start()
        stack.callback(bridge.terminate)
        await bridge.ready()
        await poll(lambda: relay_in(ivan, gone_irc) == ["join"], 15, "the relay in #gone")
        await poll(lambda: "relay" in occupants(xavier, gone_xm), 15, "the relay in the MUC")

        def members() -> list[str]:
            path = f"/_matrix/client/v3/rooms/{gone_mx}/joined_members"
            return list(synapse.api("GET", path, token=maria_mx.access_token)["joined"])

        assert relay_mx.user_id in await asyncio.to_thread(members)

        config.write_text(config_text(state, networks, {"keep": both["keep"]}))
        bridge.hup()
        await poll(lambda: bridge.count("config_reloaded") == 1, 15, "the reload")
        await poll(lambda: relay_in(ivan, gone_irc) == ["join", "part"], 15, "the relay's PART")
        await poll(lambda: "relay" not in occupants(xavier, gone_xm), 15, "the relay out")
        await poll(
            lambda: relay_mx.user_id not in members(), 15, "the relay out of the Matrix room"
        )
        # Left for good: no rejoin on its own, and the kept gateway relays on (the
        # sentinel proves the relay had time to do anything it would do).
        ivan.say(keep_irc, "still bridged")
        await poll(
            lambda: f"<{ivan.nick}@irc> still bridged" in xavier.bodies(keep_xm), 15, "relay"
        )
        assert relay_in(ivan, gone_irc) == ["join", "part"]
        assert relay_in(ivan, keep_irc) == ["join"]
        assert "relay" in occupants(xavier, keep_xm)
        assert bridge.count("left") == 3, bridge.tail()
        assert bridge.terminate() == 0, bridge.tail()
