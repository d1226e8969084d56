"""Replies and edits stay in their room, and a quote crosses only where its own message
may: a person in two rooms cannot carry one room's words into another's gateway."""

from __future__ import annotations

from tests.unit.conftest import StartDaemon, settle, until

TWO_GATEWAYS = """
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory, capabilities: {replies: false}}  # quotes inline, as IRC
gateways:
  deals:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#deals"}
      - {network: b, room: "#deals-b"}
  lunch:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#lunch"}
      - {network: c, room: "#lunch-c"}
"""

BARRIER = """
networks:
  a: {type: memory}
  b: {type: memory}
  c: {type: memory, capabilities: {replies: false}}  # quotes inline, as IRC
gateways:
  g:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#trading"}
      - {network: b, room: "#general"}
      - {network: c, room: "#research"}
policy:
  groups:
    trading: [{network: a, room: "#trading"}]
    research: [{network: c, room: "#research"}]
  barriers:
    - {name: wall, between: [trading, research]}
"""


async def test_a_reply_to_another_rooms_message_relays_without_its_quote(
    start_daemon: StartDaemon,
) -> None:
    _, hub = await start_daemon(TWO_GATEWAYS)
    secret = hub.post("#deals", "alice", "we buy Acme at 40")
    await until(lambda: len(hub.texts("#deals-b")) == 1)
    # Bob is in both rooms; his client lets him reply in #lunch to the #deals message.
    hub.post("#lunch", "bob", "nice", reply_to=secret.remote_id)
    await until(lambda: len(hub.texts("#lunch-c")) == 1)
    assert hub.texts("#lunch-c") == ["[bob] nice"]
    assert not any("Acme" in t for t in hub.texts("#lunch-c"))


async def test_an_edit_of_another_rooms_message_is_a_new_message_there(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(TWO_GATEWAYS)
    theirs = hub.post("#deals", "alice", "draft terms")
    await until(lambda: len(hub.texts("#deals-b")) == 1)
    hub.post("#lunch", "bob", "pizza", kind="edit", target=theirs.remote_id)
    await until(lambda: len(hub.texts("#lunch-c")) == 1)
    assert hub.texts("#lunch-c") == ["[bob] pizza"]
    await settle(daemon)
    assert [p.kind for p in hub.in_room("#deals-b")] == ["message"]  # no edit leaked there


async def test_a_quote_does_not_cross_a_barrier_its_message_could_not(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(BARRIER)
    hub.post("#trading", "alice", "short the bond")
    await until(lambda: len(hub.texts("#general")) == 1)
    copy = hub.in_room("#general")[0]
    hub.post("#general", "bob", "agreed", reply_to=copy.remote_id)
    await until(lambda: len(hub.texts("#research")) == 1)
    # The reply crosses to research, without the trading desk's words in its quote.
    assert hub.texts("#research") == ["[bob] agreed"]
    await until(lambda: len(hub.texts("#trading")) == 2)
    assert hub.in_room("#trading")[1].reply_to == hub.in_room("#trading")[0].remote_id
    await settle(daemon)
