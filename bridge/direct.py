"""Private messages: to a relay account (archived, answered once), or to a person on
another network (sent to them alone, under policy).

A relay account is not a person, yet people write to it (an IRC query to the relay's
nick, an XMPP chat message to its JID, a Matrix direct-message room). What they wrote is
kept in the archive like everything else the bridge saw, with the decision `ignored`
under the rule `direct-message`, and crosses no gateway. The sender gets one notice
saying so, once per sender per network: the `direct_replies` table remembers who was
answered across restarts, and it is written in the same transaction that queues the
answer, so a crash can neither lose the answer nor send it twice. Pure decisions and
SQL on a caller's connection; no I/O of its own.

A private message can also be meant for someone: an adapter says for whom when it knows
(`Origin.recipient`: a portal room's ghost, a puppet JID), and a message to the relay
whose first word is an address one adapter recognises (`DirectAddresses`: `@bob:example.org
hi`, `bob@xmpp.example hi`) is for that person. Once a message has gone from one person
to another, `direct_peers` remembers the pair both ways, so either of them answers by
simply writing to the relay again: what names no one goes to the last peer, and only a
person with none gets today's answer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

from imbridge.adapter import Adapter, DirectAddresses
from imbridge.db import Conn
from imbridge.events import (
    Event,
    Message,
    MessageKind,
    Origin,
    Recipient,
    Sender,
    new_event_id,
)
from imbridge.outbox import Item, txn_id_for
from imbridge.policy import Action, Decision, Destination

RULE = "direct-message"
REPLY_SENDER = Sender(id="imbridge", name="imbridge")

ARCHIVED_REPLY = (
    "This account is a relay: it carries messages between chat rooms only, and private "
    "messages to it go nowhere. Your message was recorded in the compliance archive."
)
UNARCHIVED_REPLY = (
    "This account is a relay: it carries messages between chat rooms only, and private "
    "messages to it go nowhere. Your message was not passed on."
)


UNREACHABLE = "direct-unreachable"


def addressed(message: Message, adapters: Mapping[str, Adapter]) -> Message | None:
    """`message` to the relay as a message to the person its first word names, that word
    left out; None when the first word is no address any network with direct sends
    recognises, or nothing follows it. Networks are asked in name order, so the same
    word always reaches the same network."""
    word, _, rest = message.text.strip().partition(" ")
    rest = rest.strip()
    if not rest:
        return None
    for name in sorted(adapters):
        adapter = adapters[name]
        if name == message.origin.network or not adapter.capabilities.direct_sends:
            continue
        if not isinstance(adapter, DirectAddresses):
            continue
        user = adapter.address(word)
        if user is not None:
            origin = dataclasses.replace(
                message.origin, recipient=Recipient(network=name, user=user)
            )
            return dataclasses.replace(
                message, origin=origin, text=rest, rich=None, mentions=(), body_start=0
            )
    return None


def peer_sync(conn: Conn, origin: Origin) -> Recipient | None:
    """The person `origin`'s sender last wrote to or heard from across networks. They
    are known by where an answer goes (their conversation: a nick, a full JID) or, as
    they were addressed (a bare JID), by their id."""
    for address in (origin.room, origin.sender.id):
        row = conn.execute(
            "SELECT peer_network, peer_user FROM direct_peers WHERE network = ? AND address = ?",
            (origin.network, address),
        ).fetchone()
        if row:
            return Recipient(network=row[0], user=row[1])
    return None


def remember_sync(conn: Conn, event: Event) -> None:
    """Pairs a direct message's sender and recipient, both ways, for their next words to
    the relay (`peer_sync`). The sender is known by the address an answer goes to (the
    origin room: their nick, their JID, the portal room)."""
    origin, to = event.origin, event.origin.recipient
    if to is None:
        return
    now = time.time()
    conn.executemany(
        "INSERT INTO direct_peers VALUES (?, ?, ?, ?, ?) ON CONFLICT (network, address) DO UPDATE"
        " SET peer_network = excluded.peer_network, peer_user = excluded.peer_user,"
        " updated = excluded.updated",
        [
            (origin.network, origin.room, to.network, to.user, now),
            (to.network, to.user, origin.network, origin.room, now),
        ],
    )


def destination(recipient: Recipient) -> Destination:
    """Where a direct message goes, as policy and the archive see it: a person."""
    return Destination(recipient.network, recipient.user, direct=True)


def unreachable(recipient: Recipient) -> Decision:
    """No adapter for the recipient's network can send to one person."""
    return Decision(
        action=Action.DENY,
        rule=UNREACHABLE,
        reason=f"{recipient.network} does not take direct messages",
        notify_sender=True,
    )


def refusal_notice(event: Event, decision: Decision) -> Item:
    """Tells the sender of a direct message that it was not delivered, and why, in the
    conversation they wrote in: a held-back private message must never look delivered."""
    origin = event.origin
    to = origin.recipient
    whom = f"{to.user} on {to.network}" if to is not None else "them"
    why = "it is not allowed" if decision.rule == "default" else decision.reason or decision.rule
    notice = Message(
        id=new_event_id(),
        origin=Origin(network=origin.network, room=origin.room, sender=REPLY_SENDER, direct=True),
        text=f"Your message to {whom} was not delivered: {why} ({decision.rule}).",
        kind=MessageKind.NOTICE,
    )
    return Item(
        network=origin.network,
        room=origin.room,
        event=notice,
        txn_id=txn_id_for(event.id, origin.network, origin.room, "direct-refused"),
    )


def decisions(event: Event) -> list[tuple[Destination, Decision]]:
    """The one decision a private message gets: kept where it was said, relayed nowhere."""
    origin = event.origin
    decision = Decision(
        action=Action.IGNORED,
        rule=RULE,
        reason="a private message to the relay account: the bridge relays rooms only",
    )
    return [(Destination(origin.network, origin.room), decision)]


def reply_sync(conn: Conn, event: Event, *, archived: bool) -> list[Item]:
    """The automatic answer to `event`'s sender, if they were never answered on this
    network; marks them answered. Only a message is answered (not a reaction or an
    edit in a direct chat). Runs inside the relay's transaction."""
    origin = event.origin
    if not isinstance(event, Message):
        return []
    cur = conn.execute(
        "INSERT INTO direct_replies (network, sender, replied) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (origin.network, origin.sender.id, time.time()),
    )
    if cur.rowcount != 1:
        return []
    notice = Message(
        id=new_event_id(),
        origin=Origin(network=origin.network, room=origin.room, sender=REPLY_SENDER, direct=True),
        text=ARCHIVED_REPLY if archived else UNARCHIVED_REPLY,
        kind=MessageKind.NOTICE,  # RFC 1459 §4.4.2: never answered automatically
    )
    return [
        Item(
            network=origin.network,
            room=origin.room,
            event=notice,
            txn_id=txn_id_for(event.id, origin.network, origin.room, "direct-reply"),
        )
    ]


__all__ = [
    "ARCHIVED_REPLY",
    "RULE",
    "UNARCHIVED_REPLY",
    "UNREACHABLE",
    "addressed",
    "decisions",
    "destination",
    "peer_sync",
    "refusal_notice",
    "remember_sync",
    "reply_sync",
    "unreachable",
]
