"""The relay path end to end on memory adapters: fan-out, echoes, loops, and edits,
deletes and replies following their message through the id map."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imbridge.adapters.memory import MemoryAdapter, MemoryHub
from imbridge.commands.policy import policy_test
from tests.unit.conftest import StartDaemon, settle, until

THREE_ROOMS = """
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory, capabilities: {edits: false, deletes: false, replies: false}}
gateways:
  g:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
      - {network: c, room: "#z"}
"""


async def test_message_fans_out_to_every_other_room_and_never_back(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(THREE_ROOMS)
    hub.post("#x", "alice", "hello")
    await until(lambda: len(hub.texts("#y")) == 1 and len(hub.texts("#z")) == 1)
    assert hub.texts("#y") == ["[alice] hello"]
    assert hub.texts("#z") == ["[alice] hello"]
    await settle(daemon)
    assert hub.texts("#x") == ["hello"]  # the origin room got no copy


async def test_relayed_copies_echoed_back_are_not_relayed_again(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(THREE_ROOMS)
    for i in range(20):
        hub.post("#x", "alice", f"m{i}")
    await until(lambda: len(hub.texts("#z")) == 20)
    await settle(daemon)
    assert len(hub.texts("#y")) == 20
    assert hub.texts("#x") == [f"m{i}" for i in range(20)]
    assert daemon.relay is not None
    assert daemon.relay.stats["b"].dropped_echo == 20


async def test_edit_follows_its_message_or_becomes_a_correction_line(
    start_daemon: StartDaemon,
) -> None:
    _, hub = await start_daemon(THREE_ROOMS)
    original = hub.post("#x", "alice", "teh plan")
    await until(lambda: len(hub.texts("#y")) == 1 and len(hub.texts("#z")) == 1)
    hub.post("#x", "alice", "the plan", kind="edit", target=original.remote_id)
    await until(lambda: any(p.kind == "edit" for p in hub.in_room("#y")))
    copy_in_y = hub.in_room("#y")[0]
    edit_in_y = next(p for p in hub.in_room("#y") if p.kind == "edit")
    assert edit_in_y.target == copy_in_y.remote_id
    assert edit_in_y.text == "[alice] the plan"
    await until(lambda: len(hub.texts("#z")) == 2)
    assert hub.texts("#z")[1] == '* alice corrected: "teh" -> "the"'


HELD_BACK = """
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory, capabilities: {edits: false}}
gateways:
  g:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
      - {network: c, room: "#z"}
policy:
  rules:
    - {name: no-typos, action: deny, text: "teh", to: {network: b}}
"""


async def test_a_correction_line_says_the_whole_text_where_the_message_never_arrived(
    start_daemon: StartDaemon,
) -> None:
    """#z cannot edit and saw the message: its line names the changed word; #y can
    edit, but the message never reached it: its line gives the whole text, and never
    quotes the word the rule kept from it."""
    _, hub = await start_daemon(HELD_BACK)
    original = hub.post("#x", "alice", "teh plan")
    await until(lambda: len(hub.texts("#z")) == 1)
    hub.post("#x", "alice", "the plan", kind="edit", target=original.remote_id)
    await until(lambda: len(hub.texts("#z")) == 2 and len(hub.texts("#y")) == 1)
    assert hub.texts("#y") == ["* corrected: [alice] the plan"]
    assert hub.texts("#z")[1] == '* alice corrected: "teh" -> "the"'


async def test_delete_removes_the_relayed_copy_where_deletes_exist(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(THREE_ROOMS)
    original = hub.post("#x", "alice", "oops")
    await until(lambda: len(hub.texts("#y")) == 1 and len(hub.texts("#z")) == 1)
    hub.post("#x", "alice", "", kind="delete", target=original.remote_id)
    await until(lambda: any(p.kind == "delete" for p in hub.in_room("#y")))
    delete = next(p for p in hub.in_room("#y") if p.kind == "delete")
    assert delete.target == hub.in_room("#y")[0].remote_id
    await settle(daemon)
    assert [p.kind for p in hub.in_room("#z")] == ["message"]  # c cannot delete


async def test_reply_points_at_the_relayed_copy_or_quotes_the_original(
    start_daemon: StartDaemon,
) -> None:
    _, hub = await start_daemon(THREE_ROOMS)
    hub.post("#x", "alice", "lunch at noon?")
    await until(lambda: len(hub.texts("#y")) == 1 and len(hub.texts("#z")) == 1)
    copy_in_y = hub.in_room("#y")[0]
    hub.post("#y", "bob", "yes", reply_to=copy_in_y.remote_id)
    await until(lambda: len(hub.texts("#x")) == 2 and len(hub.texts("#z")) == 2)
    reply_in_x = hub.in_room("#x")[1]
    assert reply_in_x.reply_to == hub.in_room("#x")[0].remote_id  # alice's original
    assert hub.texts("#z")[1] == '[bob] (re alice: "lunch at noon?") yes'


async def test_direction_in_feeds_but_never_receives_and_out_only_receives(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon("""
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory}
gateways:
  g:
    rooms:
      - {network: a, room: "#in", direction: in}
      - {network: b, room: "#both"}
      - {network: c, room: "#out", direction: out}
""")
    hub.post("#in", "alice", "from in")
    hub.post("#both", "bob", "from both")
    hub.post("#out", "carol", "from out")
    await until(lambda: len(hub.texts("#out")) == 3)
    await settle(daemon)
    assert hub.texts("#in") == ["from in"]
    assert hub.texts("#both") == ["from both", "<alice@a> from in"]
    assert sorted(hub.texts("#out")) == sorted(
        ["from out", "<alice@a> from in", "<bob@b> from both"]
    )


async def test_two_bridges_sharing_two_rooms_do_not_loop(
    start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    hub = MemoryHub()
    # Relay markers are trusted only from bots listed in ignore_users: each bridge lists
    # the other, which is what keeps them from looping.
    first_body = """
networks:
  a: {type: memory, ignore_users: [second]}
  b: {type: memory, ignore_users: [second]}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
"""
    first, _ = await start_daemon(first_body, hub=hub, state=tmp_path_factory.mktemp("one"))
    second_body = """
networks:
  a: {type: memory, nick: second, ignore_users: [imbridge]}
  b: {type: memory, nick: second, ignore_users: [imbridge]}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
"""
    second, _ = await start_daemon(second_body, hub=hub, state=tmp_path_factory.mktemp("two"))
    hub.post("#x", "alice", "only once please")
    await until(lambda: len(hub.texts("#y")) >= 2)
    for d in (first, second):
        await settle(d)
    # Each bridge relays alice's line once; neither relays the other's copy back.
    assert hub.texts("#y") == ["<alice@a> only once please"] * 2
    assert hub.texts("#x") == ["only once please"]


async def test_ignored_peer_bot_is_not_relayed(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon("""
networks:
  a: {type: memory, ignore_users: ["*bot"]}
  b: {type: memory}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
""")
    hub.post("#x", "matterbot", "relayed by someone else")
    hub.post("#x", "alice", "real person")
    await until(lambda: len(hub.texts("#y")) == 1)
    await settle(daemon)
    assert hub.texts("#y") == ["<alice@a> real person"]


async def test_control_characters_never_reach_another_network(
    start_daemon: StartDaemon,
) -> None:
    _, hub = await start_daemon()
    hub.post("#x", "mallory\u202e", "hi\r\nPRIVMSG #ops :pwned\x00\x01\x07")
    await until(lambda: len(hub.texts("#y")) == 1)
    relayed = hub.texts("#y")[0]
    assert relayed == "<mallory@a> hi\nPRIVMSG #ops :pwned"
    assert not any(ord(c) < 32 and c != "\n" for c in relayed)


async def test_a_replayed_remote_message_is_relayed_once(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon()
    post = hub.post("#x", "alice", "once")
    await until(lambda: len(hub.texts("#y")) == 1)
    adapter = daemon.adapters["a"]
    assert isinstance(adapter, MemoryAdapter)
    adapter.deliver(post)  # the server (or a resync after restart) sends it again
    await until(lambda: daemon.relay is not None and daemon.relay.stats["a"].duplicates == 1)
    assert hub.texts("#y") == ["<alice@a> once"]


DENY_NOTIFY = """
networks:
  a: {type: memory}
  b: {type: memory}
gateways:
  g:
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
policy:
  rules:
    - {name: no-secrets, action: deny, text: "(?i)secret", notify_sender: true}
"""


async def test_policy_test_previews_the_notice_the_relay_sends(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    _, hub = await start_daemon(DENY_NOTIFY)
    hub.post("#x", "alice", "the secret plan")
    await until(lambda: len(hub.texts("#x")) == 2)
    sent = hub.texts("#x")[1]
    path = tmp_path / "bridge.yaml"
    path.write_text(f"bridge: {{state_dir: '{tmp_path}'}}\n{DENY_NOTIFY}")
    out = io.StringIO()
    code = policy_test(path, source="a:#x:alice", to="b", text="the secret plan", out=out)
    assert code == 1
    assert f"notice:   {sent}\n" in out.getvalue()
    assert sent == "alice: your message was not relayed (policy rule 'no-secrets')."
