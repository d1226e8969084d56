"""Channel and nick names as IRC compares them (RFC 1459 §2.2, the default CASEMAPPING)
and the prefixes that make a target a channel (RFC 2812 §1.3). No I/O here."""

from __future__ import annotations

CHANNEL_PREFIXES = ("#", "&", "+", "!")


def irc_lower(name: str) -> str:
    """RFC 1459 case folding (the default CASEMAPPING): []\\~ are the upper case of {}|^."""
    return name.lower().translate(_RFC1459)


_RFC1459 = str.maketrans("[]\\~", "{}|^")
