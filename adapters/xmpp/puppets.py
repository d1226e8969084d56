"""Who a relayed user is in component mode: their puppet JID, their nick in a room, and
their text without the sender prefix the core put in front of it.

A puppet's JID must be valid (nodeprep would refuse or silently change many strings the
other networks allow), stable (the same sender gets the same JID after a restart, so a
correction comes from the occupant that wrote the original) and distinct (two senders
never share one, or one could edit the other's messages). Pure functions, no I/O;
property-tested in `tests/unit/test_xmpp_puppets.py`.
"""

from __future__ import annotations

import hashlib
import string

from slixmpp.stringprep import StringprepError, resourceprep

from imbridge.events import Origin
from imbridge.sanitize import clean_nick

from .proto.xmlsafe import xml_nick

# XEP-0106 §4: the characters nodeprep forbids, and the backslash that escapes them.
_XEP0106 = frozenset(" \"&'/:<>@\\")
# Kept as they are: nodeprep leaves them alone (no case folding, no normalisation).
_VERBATIM = frozenset(string.ascii_lowercase + string.digits + "!#$%()*+,-.;=?[]^_`{|}~")
_SEPARATOR = "\\40"  # "@": `alice@irc` reads as alice on irc once a client unescapes it
_NETWORK_AT = "\\c1\\80"  # an overlong "@" no UTF-8 encoder emits: see `localpart`
MAX_LOCALPART = 200  # bytes; RFC 7622 allows 1023, shorter reads better in clients
_HASH_CHARS = 20
MAX_NICK = 48  # characters; Prosody's limit is far higher, people's screens are not
LISTENER = "imbridge"
"""Localpart of the occupant that listens in each room. Never a puppet's: every puppet
localpart holds an escaped `@`."""


def escape_part(text: str) -> str:
    """`text` as localpart characters. XEP-0106 escapes (`\\20` … `\\5c`) for the
    characters it covers; every other character that nodeprep could fold, normalise or
    refuse (capitals, anything outside printable ASCII) becomes `\\hh` per UTF-8 byte,
    so the result is ASCII, survives nodeprep unchanged, and maps back to exactly one
    `text`. A backslash is always escaped, so every `\\` in the result starts an escape."""
    out: list[str] = []
    for char in text:
        if char in _VERBATIM:
            out.append(char)
        elif char in _XEP0106:
            out.append(f"\\{ord(char):02x}")
        else:
            out.extend(f"\\{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def localpart(sender_id: str, network: str) -> str:
    """The puppet localpart of `sender_id` on `network`: `alice\\40irc`.

    The sender's `@` escapes to `\\40`, the separator's too; the network's `@` becomes
    an overlong form instead, so the last `\\40` always separates the two parts and no
    two (sender, network) pairs meet. Too long a result keeps a readable head and ends
    in a hash of the pair."""
    network_part = escape_part(network).replace(_SEPARATOR, _NETWORK_AT)
    full = f"{escape_part(sender_id)}{_SEPARATOR}{network_part}"
    if len(full) <= MAX_LOCALPART:
        return full
    digest = hashlib.sha256(full.encode("ascii")).hexdigest()[:_HASH_CHARS]
    head = full[: MAX_LOCALPART - _HASH_CHARS - 1]
    if "\\" in head[-2:]:  # do not end on half an escape
        head = head[: head.rindex("\\")]
    return f"{head}.{digest}"


def person_of(local: str) -> tuple[str, str] | None:
    """The (sender id, network) whose puppet localpart `local` is; None for anything
    else, a shortened (hashed) localpart included: the mapping is undone, then checked
    by doing it again."""
    sender, sep, network = local.rpartition(_SEPARATOR)
    if not sep or not sender:
        return None
    try:
        pair = _unescape(sender), _unescape(network.replace(_NETWORK_AT, _SEPARATOR))
    except ValueError:
        return None
    return pair if localpart(*pair) == local else None


def _unescape(part: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(part):
        if part[i] == "\\":
            raw.append(int(part[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += part[i].encode("ascii")
            i += 1
    return raw.decode("utf-8")


def puppet_jid(origin: Origin, component: str) -> str:
    """The bare JID a relayed sender speaks from."""
    return f"{localpart(origin.sender.id, origin.network)}@{component}"


def _valid_nick(nick: str) -> str | None:
    """`nick` as a MUC nickname the server accepts unchanged, or None."""
    nick = xml_nick(nick).strip()[:MAX_NICK].strip()
    if not nick:
        return None
    try:
        prepared: str = resourceprep(nick)  # type: ignore[no-untyped-call]  # slixmpp
    except StringprepError:
        return None
    return nick if prepared == nick else None


def nick_candidates(name: str, sender_id: str, network: str) -> tuple[str, ...]:
    """Nicks to try for a puppet, best first (XEP-0045 §7.2.9: a taken nick is refused
    with a conflict): the sender's display name, the name with its network, then numbered
    forms; the last is plain ASCII that any server accepts."""
    base = clean_nick(name if name.strip() else sender_id).strip()
    tries = [base, f"{base} [{network}]", *(f"{base} [{network}] {n}" for n in (2, 3))]
    out: list[str] = []
    for candidate in tries:
        nick = _valid_nick(candidate)
        if nick is not None and nick not in out:
            out.append(nick)
    digest = hashlib.sha256(f"{sender_id}\0{network}".encode("utf-8", "surrogatepass"))
    out.append(f"relayed-{digest.hexdigest()[:10]}")
    return tuple(out)
