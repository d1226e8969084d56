"""Who may edit or delete a message across the gateway: only the person who wrote it.

Every relayed copy on XMPP comes from the relay's JID and every copy on Matrix from the
relay's account, so the destination network cannot tell whose message a correction
(XEP-0308, `m.replace`) or a retraction (XEP-0424, a redaction) rewrites: it accepts
anything the relay sends. Left alone, any room member could rewrite or remove, on every
other network, what someone else said. The core therefore checks authorship before an
Edit or a Delete crosses: its sender must be the sender of the message it targets, as
the relay saw it arrive (the quoting copy kept in `messages`). Anything else is archived
with the decision `ignored` and the reason, and relayed nowhere.

A moderator's removal (a Matrix redaction of someone else's message) is a Delete by
another sender too. It is not relayed by default: a moderator of one room has no say
over the others, and the archive still records both the message and its removal. A
policy that wants room moderation to follow sets `relay_moderator_deletes: true`, and
then a Delete by another sender crosses (an Edit never does).

Reads the target's copy, in the relay's transaction; no other I/O.
"""

from __future__ import annotations

from typing import Final

from imbridge import codec
from imbridge.archive.sealing import Sealer
from imbridge.db import Conn
from imbridge.events import Delete, Edit, Message
from imbridge.screening import Ignored

NOT_AUTHOR: Final = "not-author"
UNKNOWN_TARGET: Final = "unknown-target"


def original(conn: Conn, event: Edit | Delete, sealer: Sealer) -> Message | None:
    """The message `event` targets as the relay received it (sender and current text),
    or None when the relay never kept one (never seen, or purged by retention)."""
    query = "SELECT payload FROM messages WHERE event_id = ?"
    row = conn.execute(query, (event.target,)).fetchone()
    if row is None:
        return None
    found = codec.loads(sealer.open(str(row[0]), table="messages", key=event.target))
    return found if isinstance(found, Message) else None


def check(
    event: Edit | Delete, target: Message | None, *, moderator_deletes: bool = False
) -> Ignored | None:
    """None when `event` may cross; else why it may not, for the archive."""
    if target is None:
        return Ignored(
            UNKNOWN_TARGET,
            f"{type(event).__name__.lower()} of a message the bridge does not know, "
            "so its author cannot be checked",
        )
    sender, author = event.origin, target.origin
    if sender.network == author.network and sender.sender.id == author.sender.id:
        return None
    if isinstance(event, Delete) and moderator_deletes:
        return None
    what = "an edit" if isinstance(event, Edit) else "a deletion"
    return Ignored(
        NOT_AUTHOR,
        f"{what} by {sender.sender.id} on {sender.network} of a message by "
        f"{author.sender.id} on {author.network}",
    )


__all__ = ["NOT_AUTHOR", "UNKNOWN_TARGET", "check", "original"]
