"""What mentions add to sending one relayed message to a Matrix room, by room size.

    .venv/bin/python bench/mentions.py [--messages 2000]

For rooms of 20, 200 and 2 000 members, the time to build a message's request with its
pills and `m.mentions` (`to_wire` then `with_mentions`, as the Matrix transmitter does,
with the room's member index kept between messages), against the baseline measured in
this run: `to_wire` alone, which is what sending cost before mentions. The text names
one member after the sender prefix. Then what indexing a room's members costs, paid
again only when its membership changes.
"""

from __future__ import annotations

import argparse
import time

from imbridge.adapter import Outgoing
from imbridge.adapters.matrix.proto.mentions import Members, with_mentions
from imbridge.adapters.matrix.proto.translate import SendWire, to_wire
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


if __name__ == "__main__":
    main()
