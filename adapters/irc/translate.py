"""IRC lines ⇄ core events, as pure functions: the adapter's translating half, in one
place for its callers and its tests.

Each direction has its module, with the invariant it keeps: `outbound` builds and splits
the lines that carry an event (never CR, LF or NUL, never over 512 bytes with the server's
prefix, the text whole and in order up to `max_lines`), `inbound` turns a line into events
with cleaned text and nicks, keeping the `roster` of who shares which channel. No I/O in
any of them.
"""

from imbridge.adapters.irc.inbound import (
    KNOWN_RELAY_TAGS,
    NAMES_PREFIXES,
    REPLY_TAG,
    Handler,
    Inbound,
    message_to_core,
    split_ctcp,
    to_core,
)
from imbridge.adapters.irc.outbound import (
    ACTION_OVERHEAD,
    MIN_BUDGET,
    RELAY_TAG,
    Mask,
    NotSendable,
    Outbound,
    build_lines,
    describe,
    max_text_bytes,
    message_body,
    split_line,
    text_budget,
    to_irc,
)
from imbridge.adapters.irc.roster import Roster

__all__ = [
    "ACTION_OVERHEAD",
    "KNOWN_RELAY_TAGS",
    "MIN_BUDGET",
    "NAMES_PREFIXES",
    "RELAY_TAG",
    "REPLY_TAG",
    "Handler",
    "Inbound",
    "Mask",
    "NotSendable",
    "Outbound",
    "Roster",
    "build_lines",
    "describe",
    "max_text_bytes",
    "message_body",
    "message_to_core",
    "split_ctcp",
    "split_line",
    "text_budget",
    "to_core",
    "to_irc",
]
