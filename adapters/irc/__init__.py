"""IRC adapter: relays channels of one IRC network through one flood-controlled
connection (the `irc` library's asyncio client). Entry point `imbridge.adapters.irc`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imbridge.adapters.irc.config import IrcConfig

if TYPE_CHECKING:
    from imbridge.adapters.irc.adapter import IrcAdapter

__all__ = ["IrcAdapter", "IrcConfig"]


def __getattr__(name: str) -> object:
    """`IrcAdapter` is imported on first use, with the `irc` library: loading the config model alone
    (`imbridge check`, through the `imbridge.adapter_configs` entry point) stays light."""
    if name == "IrcAdapter":
        from imbridge.adapters.irc.adapter import IrcAdapter  # noqa: PLC0415 - lazy

        return IrcAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
