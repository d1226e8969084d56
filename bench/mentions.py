"""What mentions add to sending one relayed message to a Matrix room and to an XMPP room,
by room size.

    .venv/bin/python bench/mentions.py [--messages 2000]

For rooms of 20, 200 and 2 000 members, the time to build a message's request with its
pills and `m.mentions` (`to_wire` then `with_mentions`, as the Matrix transmitter does,
with the room's member index kept between messages), against the baseline measured in
this run: `to_wire` alone, which is what sending cost before mentions. The text names
one member after the sender prefix. Then what indexing a room's members costs, paid
again only when its membership changes.

XMPP: the same for a MUC's occupants (`to_wire` with XEP-0372 references from the room's
occupant index, as the sender does), against its own `to_wire` without occupants; and
the cost when the index is built for every message, as the sender did before rooms kept
theirs.
"""

from __future__ import annotations

import argparse
import time

from imbridge.adapter import Outgoing
from imbridge.adapters.matrix.proto.mentions import Members, with_mentions
from imbridge.adapters.matrix.proto.translate import SendWire, to_wire
from imbridge.adapters.xmpp.proto import translate as xmpp
from imbridge.adapters.xmpp.proto.mentions import occupant_names
from imbridge.events import EventId, Message, Origin, Sender

ORIGIN = Origin(network="irc", room="#ops", sender=Sender(id="carol", name="carol"))


def per_message(count: int, members: Members | None) -> float:
    """Microseconds per message."""
    items = [
        Outgoing(room="!r", txn_id=f"t{i}", event=Message(
            id=EventId(f"e{i}"), origin=ORIGIN, body_start=12,
            text=f"<carol@irc> user{i % 20}name: the build is green again, merging now",
        ))
        for i in range(count)
    ]  # fmt: skip
    start = time.perf_counter()
    for item in items:
        wire = to_wire(item)
        if members is not None:
            assert isinstance(wire, SendWire)
            assert isinstance(item.event, Message)
            with_mentions(wire.content, item.event, members)
    return (time.perf_counter() - start) / count * 1e6


def per_xmpp_message(count: int, nicks: list[str] | None, *, rebuild: bool = False) -> float:
    """Microseconds per message to an XMPP room of `nicks` (None: no occupants)."""
    room = "ops@conference.example.org"
    items = [
        Outgoing(room=room, txn_id=f"t{i}", event=Message(
            id=EventId(f"e{i}"), origin=ORIGIN, body_start=12,
            text=f"<carol@irc> user{i % 20}name: the build is green again, merging now",
        ))
        for i in range(count)
    ]  # fmt: skip
    kept = occupant_names(room, nicks) if nicks is not None else xmpp.NOBODY
    start = time.perf_counter()
    for item in items:
        index = occupant_names(room, nicks) if rebuild and nicks is not None else kept
        xmpp.to_wire(item, identity="relay@example.org", occupants=index)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    baseline = per_message(args.messages, None)
    print(f"to_wire alone (baseline): {baseline:8.1f} µs/message")
    for size in (20, 200, 2000):
        users = {f"@u{i}:hs": f"user{i}name" for i in range(size)}
        start = time.perf_counter()
        members = Members.of(users)
        built = (time.perf_counter() - start) * 1e6
        cost = per_message(args.messages, members)
        print(f"with mentions, {size:>5} members: {cost:8.1f} µs/message"
              f"  ({cost / baseline:5.1f}x baseline); indexing them: {built:8.1f} µs")  # fmt: skip
    baseline = per_xmpp_message(args.messages, None)
    print(f"XMPP to_wire without occupants (baseline): {baseline:8.1f} µs/message")
    for size in (20, 200, 2000):
        nicks = [f"user{i}name" for i in range(size)]
        kept = per_xmpp_message(args.messages, nicks)
        rebuilt = per_xmpp_message(min(args.messages, 200), nicks, rebuild=True)
        print(f"XMPP, {size:>5} occupants: {kept:8.1f} µs/message with the room's index"
              f" ({kept / baseline:5.1f}x baseline); {rebuilt:8.1f} µs indexing them for"
              f" each message")  # fmt: skip


if __name__ == "__main__":
    main()
