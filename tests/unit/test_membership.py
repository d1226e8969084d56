"""`relay_membership`: joins, leaves, nick changes and kicks reach the gateway's other
rooms as one notice line per room per window, net of what undid itself, and every one
of them is archived whether relayed or not."""

from __future__ import annotations

from typing import Any

from imbridge.adapters.memory import MemoryHub
from imbridge.events import (
    Event,
    EventId,
    Join,
    Kick,
    Leave,
    NickChange,
    Origin,
    Sender,
)
from imbridge.membership import Debouncer
from imbridge.policy import Destination
from tests.unit.conftest import StartDaemon, settle, until

DEST = Destination("b", "#y")


def origin(nick: str, room: str = "#room") -> Origin:
    return Origin(network="corp-irc", room=room, sender=Sender(id=nick, name=nick))


def n(i: int) -> EventId:
    return EventId(f"e{i}")


def lines_after(events: list[Event], window: float = 10.0) -> list[str]:
    d = Debouncer()
    for i, event in enumerate(events):
        d.add(event, DEST, now=i * 0.01, window=window)
    assert d.due(window - 1) == []  # still open
    return [line for _, line in d.due(window + 1)]


def test_a_join_storm_is_one_line_naming_two_and_counting_the_rest() -> None:
    nicks = ["alice", "bob", *(f"u{i}" for i in range(12))]
    joins: list[Event] = [Join(id=n(i), origin=origin(x)) for i, x in enumerate(nicks)]
    assert lines_after(joins) == ["* alice, bob and 12 others joined #room on corp-irc"]


def test_a_netsplit_healed_within_the_window_says_nothing() -> None:
    nicks = [f"u{i}" for i in range(40)]
    storm: list[Event] = [Leave(id=n(i), origin=origin(x)) for i, x in enumerate(nicks)]
    storm += [Join(id=n(100 + i), origin=origin(x)) for i, x in enumerate(nicks)]
    assert lines_after(storm) == []


def test_leaves_kicks_and_renames_share_one_line() -> None:
    events: list[Event] = [
        Leave(id=n(1), origin=origin("carol"), reason="bye"),
        Kick(id=n(2), origin=origin("dave"), by="op", reason="spam\nmore spam"),
        NickChange(id=n(3), origin=origin("frank"), new_name="frank_"),
        NickChange(id=n(4), origin=origin("frank_"), new_name="frank__"),
        Join(id=n(5), origin=origin("gina")),
        Join(id=n(6), origin=origin("hal")),
        Leave(id=n(7), origin=origin("hal")),  # came and went: the archive has it
    ]
    assert lines_after(events) == [
        "* #room on corp-irc: gina joined; carol left; dave was kicked by op (spam more "
        "spam); frank is now known as frank__"
    ]


def test_each_room_and_destination_gets_its_own_line() -> None:
    d = Debouncer()
    d.add(Join(id=n(1), origin=origin("alice", "#a")), DEST, now=0, window=5)
    d.add(Join(id=n(2), origin=origin("bob", "#b")), DEST, now=1, window=5)
    d.add(Join(id=n(3), origin=origin("carol", "#a")), Destination("c", "#z"), now=2, window=5)
    assert d.next_close() == 5
    assert [line for _, line in d.due(5)] == ["* alice joined #a on corp-irc"]
    assert [(w.dest, line) for w, line in d.flush()] == [
        (DEST, "* bob joined #b on corp-irc"),
        (Destination("c", "#z"), "* carol joined #a on corp-irc"),
    ]
    assert d.next_close() is None


def gateway(relay: bool, window: float = 0.3, archive: str = "{enabled: false}") -> str:
    return f"""
networks:
  a: {{type: memory}}
  b: {{type: memory}}
gateways:
  g:
    relay_membership: {str(relay).lower()}
    membership_window: {window}
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
archive: {archive}
"""


def notices(hub: MemoryHub, room: str) -> list[str]:
    return [p.text for p in hub.in_room(room) if p.kind == "message" and p.text.startswith("* ")]


async def test_reconnect_storm_gives_at_most_one_line_per_room_per_window(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(gateway(relay=True, window=0.3))
    for i in range(30):
        hub.post("#x", f"u{i}", "", kind="leave")
    await until(lambda: len(notices(hub, "#y")) == 1)
    for i in range(30):
        hub.post("#x", f"u{i}", "", kind="join")
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(notices(hub, "#y")) == 2)
    await settle(daemon)
    assert notices(hub, "#y") == [
        "* u0, u1 and 28 others left #x on a",
        "* u0, u1 and 28 others joined #x on a",
    ]
    assert notices(hub, "#x") == []  # never back to where it happened


async def test_membership_is_not_relayed_unless_the_gateway_asks(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(gateway(relay=False))
    hub.post("#x", "alice", "", kind="join")
    hub.post("#x", "alice", "sentinel")
    await until(lambda: any("sentinel" in p.text for p in hub.in_room("#y")))
    await settle(daemon)
    assert daemon.relay is not None
    assert daemon.relay.membership is not None
    await daemon.relay.membership.flush()  # anything collected would be queued now
    await settle(daemon)
    assert notices(hub, "#y") == []


async def test_a_clean_stop_sends_the_open_windows_lines(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon(gateway(relay=True, window=3600))
    hub.post("#x", "alice", "", kind="join")
    hub.post("#x", "alice", "sentinel")
    await until(lambda: any("sentinel" in p.text for p in hub.in_room("#y")))
    assert notices(hub, "#y") == []  # its window is an hour
    await daemon.stop(drain=5)
    assert notices(hub, "#y") == ["* alice joined #x on a"]


async def test_every_membership_change_is_archived_and_so_is_its_notice(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(gateway(relay=True, archive="{enabled: true}"))
    hub.post("#x", "alice", "", kind="join")
    hub.post("#x", "alice", "alice2", kind="nick")
    hub.post("#x", "bob", "op", kind="kick")
    hub.post("#x", "carol", "", kind="leave")
    await until(lambda: len(notices(hub, "#y")) == 1)
    await settle(daemon)

    def kinds(conn: Any) -> list[str]:
        rows = conn.execute(
            "SELECT body FROM archive_records WHERE kind = 'event' ORDER BY seq"
        ).fetchall()
        return [str(r[0]) for r in rows]

    bodies = await daemon.db.read(kinds)
    for kind in ('"type":"join"', '"type":"nick"', '"type":"kick"', '"type":"leave"'):
        assert any(kind in b for b in bodies), (kind, bodies)
    purposes = await daemon.db.read(
        lambda conn: conn.execute(
            "SELECT action FROM archive_records WHERE kind = 'notice'"
        ).fetchall()
    )
    assert ("membership",) in purposes
