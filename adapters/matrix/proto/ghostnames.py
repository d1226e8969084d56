"""Who a remote sender is on Matrix in appservice mode: a ghost user id made from their
network and nick, the appservice namespace that claims those ids, and the display name
they show. Pure functions, no I/O.

A Matrix localpart may hold only `a-z 0-9 . _ = - /` (the spec's "User Identifiers"),
while nicks are case-insensitive on IRC and almost anything on XMPP; the mapping is the
one the spec suggests ("Mapping from other character sets"): `_` becomes `__`, an
upper-case letter `_` plus its lower-case form, and every other character `=xx` per
UTF-8 byte (`/`, which localparts allow, included: it breaks URL paths). It is
injective, so two senders never share a ghost, and reversible.
"""

from __future__ import annotations

import re

from imbridge.sanitize import clean_nick

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def escape_localpart(text: str) -> str:
    """`text` in the characters a localpart allows, one-to-one."""
    out: list[str] = []
    for c in text:
        if c in _PLAIN:
            out.append(c)
        elif c == "_":
            out.append("__")
        elif "A" <= c <= "Z":
            out.append("_" + c.lower())
        else:
            out.extend(f"={b:02x}" for b in c.encode("utf-8"))
    return "".join(out)


def unescape_localpart(text: str) -> str:
    """The inverse of `escape_localpart`; ValueError for text it cannot have made."""
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "_":
            nxt = text[i + 1 : i + 2]
            if nxt == "_":
                raw += b"_"
            elif nxt and "a" <= nxt <= "z":
                raw += nxt.upper().encode()
            else:
                raise ValueError(f"bad escape at {i}")
            i += 2
        elif c == "=":
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        elif c in _PLAIN:
            raw += c.encode()
            i += 1
        else:
            raise ValueError(f"character {c!r} is not in a localpart")
    return raw.decode("utf-8")


def ghost_localpart(prefix: str, network: str, sender: str) -> str:
    """`<prefix><network>_<sender>`, escaped; the network is escaped too, so a network
    named `a_b` and one named `a` cannot collide."""
    return f"{prefix}{escape_localpart(network)}_{escape_localpart(sender)}"


def ghost_id(prefix: str, network: str, sender: str, server: str) -> str:
    return f"@{ghost_localpart(prefix, network, sender)}:{server}"


def namespace_regex(prefix: str, server: str) -> str:
    """The exclusive user namespace of the registration: every ghost of every network."""
    return f"@{re.escape(prefix)}.*:{re.escape(server)}"


def is_ghost(user_id: str, prefix: str, server: str) -> bool:
    return re.fullmatch(namespace_regex(prefix, server), user_id) is not None


def server_of(user_id: str) -> str:
    """The server name of a full user id (`@bot:example.org` -> `example.org`)."""
    return user_id.split(":", 1)[1]


def display_name(nick: str) -> str:
    """What a ghost shows: the remote nick, one line, without bidi overrides or
    invisible characters that would let it pass for someone else."""
    return clean_nick(nick)
