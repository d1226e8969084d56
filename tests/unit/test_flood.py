"""Flooding, on memory adapters through the real daemon: one sender posting faster than a
room can take delays nobody else (fair turns), and past the room's backlog limit only
that sender's new messages are shed: archived as failed, counted in /metrics, and
announced once to the room and to the sender."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.archive.store import ArchiveStore
from imbridge.daemon import Daemon
from imbridge.db import Conn
from imbridge.shedding import SHED_ERROR
from tests.unit.conftest import StartDaemon, settle, until

SLOW = """
networks:
  a: {{type: memory}}
  b: {{type: memory, rate_limit: {{per_second: {rate}, burst: 1}}{backlog}}}
gateways:
  g:
    rooms:
      - {{network: a, room: "#x"}}
      - {{network: b, room: "#y"}}
policy: {{relay_moderator_deletes: true}}
"""


def slow(rate: int = 50, backlog: str = "") -> str:
    return SLOW.format(rate=rate, backlog=f", backlog: {backlog}" if backlog else "")


LONG = "x" * 2000  # four of these fill one sender's burst (`fairness.BURST`)


def said(hub: MemoryHub, room: str) -> list[str]:
    return [p.text for p in hub.in_room(room) if p.kind == "message"]


def memory(daemon: Daemon, name: str) -> MemoryAdapter:
    adapter = daemon.adapters[name]
    assert isinstance(adapter, MemoryAdapter)
    return adapter


async def queued(daemon: Daemon, count: int) -> None:
    await until(lambda: daemon.outbox is not None and daemon.outbox.depth("b") >= count)


async def test_a_quiet_sender_is_not_stuck_behind_a_flood(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon(slow(rate=25))
    for i in range(40):
        hub.post("#x", "mallory", f"flood {i} {LONG}")
    await queued(daemon, 30)
    hub.post("#x", "alice", "quick question")
    await until(lambda: "<alice@a> quick question" in said(hub, "#y"))
    got = said(hub, "#y")
    # Arrival order would put it after the 40 floods; fair turns, after mallory's burst.
    assert got.index("<alice@a> quick question") < 15
    await until(lambda: len(said(hub, "#y")) == 41)
    floods = [t for t in said(hub, "#y") if t.startswith("<mallory@a>")]
    assert floods == [f"<mallory@a> flood {i} {LONG}" for i in range(40)]


async def test_a_delete_of_a_queued_message_waits_for_it_and_removes_the_copy(
    start_daemon: StartDaemon,
) -> None:
    """A moderator's delete takes its own fair turn, but never before the message it
    deletes has reached the room: otherwise it would find nothing to delete there."""
    daemon, hub = await start_daemon(slow(rate=40))
    posts = [hub.post("#x", "mallory", f"spam {i} {LONG}") for i in range(30)]
    await queued(daemon, 25)
    hub.post("#x", "mod", "", kind="delete", target=posts[25].remote_id)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(said(hub, "#y")) == 31)
    await settle(daemon)
    copy = next(p for p in hub.in_room("#y") if p.text == f"<mallory@a> spam 25 {LONG}")
    deletes = [p for p in hub.in_room("#y") if p.kind == "delete"]
    assert [d.target for d in deletes] == [copy.remote_id]
    room = hub.in_room("#y")
    assert room.index(copy) < room.index(deletes[0])


async def test_restart_rebuilds_fair_turns_from_the_queue(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon, hub = await start_daemon(slow())
    memory(daemon, "b").online = False
    for i in range(30):
        hub.post("#x", "mallory", f"flood {i} {LONG}")
    hub.post("#x", "alice", "still there?")
    await queued(daemon, 31)
    await daemon.stop(drain=0)

    hub2 = MemoryHub()
    again, _ = await start_daemon(slow(), hub=hub2, state=tmp_path)
    await until(lambda: "<alice@a> still there?" in said(hub2, "#y"))
    assert said(hub2, "#y").index("<alice@a> still there?") < 8
    await until(lambda: len(said(hub2, "#y")) == 31)
    await settle(again)
    assert again.outbox is not None
    backlog = again.outbox.backlog("b", "#y")  # the previous run's items, counted out
    assert (backlog.items, backlog.bytes, backlog.earlier) == (0, 0, 0)


def store_of(daemon: Daemon) -> ArchiveStore:
    assert daemon.archive is not None
    return daemon.archive.store


async def shed_records(daemon: Daemon) -> list[tuple[str, str | None]]:
    """(sender, error) of each `failed` delivery record, as an auditor reads them."""
    store = store_of(daemon)

    def q(conn: Conn) -> list[tuple[str, str | None]]:
        out = []
        for row in store.rows(conn, "WHERE kind = 'delivery' AND action = 'failed'"):
            assert (row.record.dest_network, row.record.dest_room) == ("b", "#y")
            (sender,) = conn.execute(
                "SELECT sender FROM archive_records WHERE kind = 'event' AND event_id = ?",
                (row.record.event_id,),
            ).fetchone()
            out.append((sender, store.body(row.record)["error"]))
        return out

    return await daemon.db.read(q)


async def test_past_the_backlog_limit_only_the_flooder_is_shed_archived_counted_and_told(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(slow(rate=20, backlog="{max_items: 10, notice_every: 600}"))
    for i in range(30):
        hub.post("#x", "mallory", f"flood {i}")
        if i % 10 == 5:
            hub.post("#x", "alice", f"alice {i}")
    await until(lambda: sum(t.startswith("<alice@a>") for t in said(hub, "#y")) == 3)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: "<alice@a> sentinel" in said(hub, "#y"))
    await settle(daemon)

    got = said(hub, "#y")
    assert [t for t in got if t.startswith("<alice@a>")] == [
        "<alice@a> alice 5",
        "<alice@a> alice 15",
        "<alice@a> alice 25",
        "<alice@a> sentinel",
    ]
    floods = [t for t in got if t.startswith("<mallory@a>")]
    shed = 30 - len(floods)
    assert shed > 0
    # What went through kept its order; what did not is on the record, one by one.
    numbers = [int(t.rsplit(" ", 1)[1]) for t in floods]
    assert numbers == sorted(numbers)
    records = await shed_records(daemon)
    assert records == [("mallory", SHED_ERROR)] * shed
    assert daemon.outbox is not None
    assert daemon.outbox.stats["b"].shed == shed
    backlog = daemon.outbox.backlog("b", "#y")  # notices included: all counted out
    assert (backlog.items, backlog.bytes) == (0, 0)
    metrics = generate_latest(daemon.metrics.registry).decode()
    assert f'imbridge_messages_shed_total{{network="b"}} {float(shed)}' in metrics

    # One notice in the room, one to the sender, both archived.
    in_room = [t for t in got if "sending faster" in t]
    assert len(in_room) == 1
    assert "mallory" in in_room[0]
    to_sender = [t for t in said(hub, "#x") if "sending faster" in t]
    assert len(to_sender) == 1
    assert to_sender[0].startswith("mallory: ")
    kinds = await daemon.db.read(
        lambda c: c.execute(
            "SELECT network, room, action FROM archive_records WHERE kind = 'notice'"
        ).fetchall()
    )
    assert sorted(kinds) == [("a", "#x", "backlog"), ("b", "#y", "backlog")]


async def test_a_destination_that_is_down_sheds_nothing(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon(slow(rate=1000, backlog="{max_items: 5}"))
    b = memory(daemon, "b")
    b.online = False
    for i in range(20):
        hub.post("#x", "mallory", f"while down {i}")
    await queued(daemon, 20)
    b.online = True
    await until(lambda: len(said(hub, "#y")) == 20)
    assert said(hub, "#y") == [f"<mallory@a> while down {i}" for i in range(20)]
    assert daemon.outbox is not None
    assert daemon.outbox.stats["b"].shed == 0
