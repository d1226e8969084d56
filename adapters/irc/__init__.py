"""IRC adapter: relays channels of one IRC network through one flood-controlled
connection (the `irc` library's asyncio client). Entry point `imbridge.adapters.irc`."""

from imbridge.adapters.irc.adapter import IrcAdapter
from imbridge.adapters.irc.config import IrcConfig

__all__ = ["IrcAdapter", "IrcConfig"]
