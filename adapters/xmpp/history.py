"""Catch-up from a room's message archive (XEP-0313 MAM, with XEP-0059 paging).

After a restart or a lost session the adapter asks the room for everything after the last
stanza-id it handled; when the archive no longer knows that id it falls back to a time
window. Results are returned as parsed messages in archive order; the adapter dedupes
them against live traffic by stanza-id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slixmpp import JID
from slixmpp.exceptions import IqError

from .proto.stanzas import WireMessage, parse_archived

PAGE = 100
LIMIT = 5_000  # a catch-up never replays more than this into the gateway
TIMEOUT = 15
_NS_RSM = "http://jabber.org/protocol/rsm"
_NS_MAM = "urn:xmpp:mam:2"


async def _page(
    client: Any, room: str, after: str | None, start: datetime | None
) -> tuple[list[WireMessage], str | None, bool]:
    rsm: dict[str, Any] = {"max": PAGE}
    if after:
        rsm["after"] = after
    iq = await client.plugin["xep_0313"].retrieve(
        jid=JID(room), start=None if after else start, rsm=rsm, timeout=TIMEOUT
    )
    messages = [m for m in (parse_archived(r.xml) for r in iq["mam"]["results"]) if m]
    fin = iq.xml.find(f"{{{_NS_MAM}}}fin")
    complete = fin is None or fin.get("complete") in ("true", "1")
    last = fin.findtext(f"{{{_NS_RSM}}}set/{{{_NS_RSM}}}last") if fin is not None else None
    return messages, last, complete


async def fetch_after(
    client: Any, room: str, *, after: str | None, start: datetime | None
) -> list[WireMessage]:
    """Archived messages of `room` after stanza-id `after` (or since `start`)."""
    out: list[WireMessage] = []
    try:
        messages, last, complete = await _page(client, room, after, start)
    except IqError as exc:
        if after is None or start is None or exc.condition != "item-not-found":
            raise
        # The archive forgot our id (expired): fall back to the time window.
        messages, last, complete = await _page(client, room, None, start)
    out.extend(messages)
    while not complete and last and messages and len(out) < LIMIT:
        messages, last, complete = await _page(client, room, last, start)
        out.extend(messages)
    return out
