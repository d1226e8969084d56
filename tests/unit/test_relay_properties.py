"""Properties of whole bridges on memory adapters, over generated conversations: two
bridges sharing two rooms never loop, and edits, deletes and replies always point at the
relayed copy of their target."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imbridge.adapter import Cursors, NetworkConfig
from imbridge.adapters.memory import MemoryAdapter, MemoryHub, Post
from imbridge.daemon import Daemon
from tests.unit.conftest import config_for, settle, until

ROOMS = ("#x", "#y")
OTHER = {"#x": "#y", "#y": "#x"}


def body(nick: str) -> str:
    return f"""
networks:
  a: {{type: memory, nick: {nick}, ignore_users: ["bridge*"]}}
  b: {{type: memory, nick: {nick}, ignore_users: ["bridge*"]}}
gateways:
  g:
    nick_format: ""
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
"""


ops = st.lists(
    st.tuples(
        st.sampled_from(ROOMS),
        st.sampled_from(["post", "edit", "delete", "reply"]),
        st.integers(min_value=0, max_value=50),
    ),
    min_size=1,
    max_size=10,
)


async def run_bridges(count: int, conversation: list[tuple[str, str, int]]) -> MemoryHub:
    hub = MemoryHub()
    daemons = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):

            def build(name: str, net: NetworkConfig, cursors: Cursors) -> MemoryAdapter:
                return MemoryAdapter(name, net, cursors, hub)

            daemon = Daemon(config_for(Path(tmp) / str(i), body(f"bridge{i}")), factory=build)
            await daemon.start()
            assert await daemon.ready(5)
            daemons.append(daemon)
        try:
            originals: list[Post] = []
            for room, op, pick in conversation:
                targets = [p for p in originals if p.room == room and p.kind == "message"]
                target = targets[pick % len(targets)] if targets else None
                if op == "post" or target is None:
                    originals.append(hub.post(room, "alice", f"text {len(hub.posts)}"))
                elif op == "edit":  # by its author: nobody else's edit crosses
                    hub.post(room, target.sender, "edited", kind="edit", target=target.remote_id)
                elif op == "delete":
                    hub.post(room, target.sender, "", kind="delete", target=target.remote_id)
                else:
                    originals.append(hub.post(room, "bob", "reply", reply_to=target.remote_id))
                await quiet(daemons, hub)  # this step relays before the next refers to it
            await quiet(daemons, hub)
            return hub
        finally:
            for d in daemons:
                await d.stop(drain=0)


def received(daemon: Daemon) -> int:
    return sum(a.processed for a in daemon.adapters.values() if isinstance(a, MemoryAdapter))


def caught_up(daemon: Daemon, count: int) -> bool:
    return received(daemon) >= count


async def quiet(daemons: list[Daemon], hub: MemoryHub) -> None:
    """Until every bridge has taken in every post (each sees each room once) and sent
    everything it queued; relayed copies are posts too, so repeat until nothing moves."""
    while True:
        count = len(hub.posts)
        for d in daemons:
            await until(functools.partial(caught_up, d, count))
            await settle(d)
        if len(hub.posts) == count:
            return


def by_users(hub: MemoryHub) -> list[Post]:
    return [p for p in hub.posts if not p.relayed]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(conversation=ops)
async def test_two_bridges_sharing_two_rooms_never_loop(
    conversation: list[tuple[str, str, int]],
) -> None:
    hub = await run_bridges(2, conversation)
    relayed = [p for p in hub.posts if p.relayed]
    # every user action arrives once per bridge in the other room, and nothing else
    assert len(relayed) == 2 * len(by_users(hub))
    for bridge in ("bridge0", "bridge1"):
        mine = [p for p in relayed if p.sender == bridge]
        for room in ROOMS:
            sent_there = [(p.kind, p.text) for p in mine if p.room == room]
            users_here = [(p.kind, p.text) for p in by_users(hub) if p.room == OTHER[room]]
            assert sent_there == users_here


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(conversation=ops)
async def test_edits_deletes_and_replies_point_at_the_relayed_copy(
    conversation: list[tuple[str, str, int]],
) -> None:
    hub = await run_bridges(1, conversation)
    copy_of: dict[str, str] = {}  # user's remote id -> relayed copy's remote id
    users = by_users(hub)
    relayed = [p for p in hub.posts if p.relayed]
    assert len(relayed) == len(users)
    for original, copy in zip(users, relayed, strict=True):
        assert copy.room == OTHER[original.room]
        assert copy.kind == original.kind
        if original.kind == "message":
            copy_of[original.remote_id] = copy.remote_id
        if original.target is not None:
            assert copy.target == copy_of[original.target]
        if original.reply_to is not None:
            # a reply to a user's message points at its copy; a reply to a relayed copy
            # points back at the original in the other room
            expected = copy_of.get(original.reply_to)
            assert copy.reply_to == expected
