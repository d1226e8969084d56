"""Edits and deletions across the gateway on memory adapters: only a message's author can
change it elsewhere (`authorship`), and quick edits toward a network that cannot edit
become one line (`editwindow`), held across a restart."""

from __future__ import annotations

from pathlib import Path

from imbridge.adapters.memory import MemoryHub
from imbridge.archive.search import Hit, Query, search
from imbridge.daemon import Daemon
from tests.unit.conftest import StartDaemon, settle, until

ROOMS = """
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory, capabilities: {edits: false, deletes: false, edit_window: %s}}
gateways:
  g:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
      - {network: c, room: "#z"}
"""


def kinds(hub: MemoryHub, room: str) -> list[str]:
    return [p.kind for p in hub.in_room(room)]


async def find(daemon: Daemon, words: str) -> list[Hit]:
    assert daemon.archive is not None
    store = daemon.archive.store
    await daemon.db.transact(store.index_pending)
    return await daemon.db.read(lambda conn: search(conn, store, Query(text=words)))


async def test_an_edit_of_someone_elses_message_changes_nothing_elsewhere(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS % 0)
    original = hub.post("#x", "alice", "I will pay the invoice")
    await until(lambda: len(hub.texts("#y")) == 1 and len(hub.texts("#z")) == 1)
    hub.post("#x", "mallory", "I will never pay rutabaga", kind="edit", target=original.remote_id)
    hub.post("#x", "mallory", "", kind="delete", target=original.remote_id)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(hub.texts("#y")) == 2 and len(hub.texts("#z")) == 2)
    await settle(daemon)
    assert kinds(hub, "#y") == ["message", "message"]
    assert hub.texts("#y") == ["[alice] I will pay the invoice", "[alice] sentinel"]
    assert hub.texts("#z") == ["[alice] I will pay the invoice", "[alice] sentinel"]
    (hit,) = await find(daemon, "rutabaga")
    assert [(o.action, o.rule) for o in hit.outcomes] == [("ignored", "not-author")]
    assert daemon.relay is not None
    assert daemon.relay.stats["a"].ignored == 2


async def test_the_author_can_still_edit_and_delete(start_daemon: StartDaemon) -> None:
    _, hub = await start_daemon(ROOMS % 0)
    original = hub.post("#x", "alice", "teh plan")
    await until(lambda: len(hub.texts("#y")) == 1)
    hub.post("#x", "alice", "the plan", kind="edit", target=original.remote_id)
    hub.post("#x", "alice", "", kind="delete", target=original.remote_id)
    await until(lambda: kinds(hub, "#y") == ["message", "edit", "delete"])


async def test_quick_edits_become_one_short_line_where_edits_cannot_be_shown(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS % 30)
    original = hub.post("#x", "alice", "meet at teh station at noon")
    await until(lambda: len(hub.texts("#z")) == 1)
    for text in ("meet at the station at noon", "meet at the station at 1pm",
                 "meet at the station at 2pm"):  # fmt: skip
        hub.post("#x", "alice", text, kind="edit", target=original.remote_id)
    await until(lambda: kinds(hub, "#y").count("edit") == 3)
    hub.post("#x", "alice", "sentinel")  # waiting behind it, the line goes at once
    await until(lambda: "[alice] sentinel" in hub.texts("#z"))
    await settle(daemon)
    assert hub.texts("#z") == [
        "[alice] meet at teh station at noon",
        '* alice corrected: "teh" -> "the", "noon" -> "2pm"',
        "[alice] sentinel",
    ]


async def test_an_edit_that_changes_nothing_visible_is_not_shown(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS % 0)
    original = hub.post("#x", "alice", "all good here")
    await until(lambda: len(hub.texts("#z")) == 1)
    hub.post("#x", "alice", "all  good here ", kind="edit", target=original.remote_id)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(hub.texts("#z")) == 2)
    await settle(daemon)
    assert hub.texts("#z") == ["[alice] all good here", "[alice] sentinel"]


async def test_held_edits_are_sent_after_a_restart(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    hub = MemoryHub()
    daemon, _ = await start_daemon(ROOMS % 30, hub=hub, state=tmp_path / "s")
    original = hub.post("#x", "alice", "ship it on friday")
    await until(lambda: len(hub.texts("#z")) == 1)
    hub.post("#x", "alice", "ship it on monday", kind="edit", target=original.remote_id)
    hub.post("#x", "alice", "ship it on tuesday", kind="edit", target=original.remote_id)
    await until(lambda: kinds(hub, "#y").count("edit") == 2)
    await daemon.stop(drain=0)
    assert hub.texts("#z") == ["[alice] ship it on friday"]  # still held when stopped
    await start_daemon(ROOMS % 0, hub=hub, state=tmp_path / "s")
    await until(lambda: len(hub.texts("#z")) == 2)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(hub.texts("#z")) == 3)
    assert hub.texts("#z")[1:] == ['* alice corrected: "friday" -> "tuesday"', "[alice] sentinel"]


async def test_a_moderators_deletion_crosses_only_where_the_policy_says_so(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon, hub = await start_daemon(ROOMS % 0)
    original = hub.post("#x", "alice", "buy now")
    await until(lambda: len(hub.texts("#y")) == 1)
    hub.post("#x", "moderator", "", kind="delete", target=original.remote_id)
    hub.post("#x", "alice", "sentinel")
    await until(lambda: len(hub.texts("#y")) == 2)
    await settle(daemon)
    assert kinds(hub, "#y") == ["message", "message"]

    hub2 = MemoryHub()
    opted_in = ROOMS % 0 + "policy: {relay_moderator_deletes: true}\n"
    daemon2, _ = await start_daemon(opted_in, hub=hub2, state=tmp_path / "opted-in")
    original = hub2.post("#x", "alice", "buy now")
    await until(lambda: len(hub2.texts("#y")) == 1)
    hub2.post("#x", "moderator", "", kind="delete", target=original.remote_id)
    await until(lambda: kinds(hub2, "#y") == ["message", "delete"])
    hub2.post("#x", "moderator", "mod edit", kind="edit", target=original.remote_id)
    hub2.post("#x", "alice", "sentinel")
    await until(lambda: len(hub2.texts("#y")) == 2)
    await settle(daemon2)
    assert kinds(hub2, "#y") == ["message", "delete", "message"]  # an edit never crosses
