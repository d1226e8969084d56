"""Private messages to a relay account: archived, never relayed, answered once.

A relay account is not a person, yet people write to it (an IRC query to the relay's
nick, an XMPP chat message to its JID, a Matrix direct-message room). What they wrote is
kept in the archive like everything else the bridge saw, with the decision `ignored`
under the rule `direct-message`, and crosses no gateway. The sender gets one notice
saying so, once per sender per network: the `direct_replies` table remembers who was
answered across restarts, and it is written in the same transaction that queues the
answer, so a crash can neither lose the answer nor send it twice. Pure decisions and
SQL on a caller's connection; no I/O of its own.
"""

from __future__ import annotations

import sqlite3
import time

from imbridge.events import Event, Message, MessageKind, Origin, Sender, new_event_id
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


def decisions(event: Event) -> list[tuple[Destination, Decision]]:
    """The one decision a private message gets: kept where it was said, relayed nowhere."""
    origin = event.origin
    decision = Decision(
        action=Action.IGNORED,
        rule=RULE,
        reason="a private message to the relay account: the bridge relays rooms only",
    )
    return [(Destination(origin.network, origin.room), decision)]


def reply_sync(conn: sqlite3.Connection, event: Event, *, archived: bool) -> list[Item]:
    """The automatic answer to `event`'s sender, if they were never answered on this
    network; marks them answered. Only a message is answered (not a reaction or an
    edit in a direct chat). Runs inside the relay's transaction."""
    origin = event.origin
    if not isinstance(event, Message):
        return []
    cur = conn.execute(
        "INSERT OR IGNORE INTO direct_replies (network, sender, replied) VALUES (?, ?, ?)",
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


__all__ = ["ARCHIVED_REPLY", "RULE", "UNARCHIVED_REPLY", "decisions", "reply_sync"]
