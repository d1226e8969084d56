"""XMPP adapter: MUC relay on slixmpp with stream management, corrections, retractions,
replies and XML-safe stanzas, as one client account or as an external component with a
JID per relayed user (the section's `mode`). The `imbridge.adapters` entry point `xmpp`
names `xmpp_adapter`, the adapter class itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imbridge.adapters.xmpp.config import XmppConfig
from imbridge.adapters.xmpp.quiet import silence_import_advice

silence_import_advice()  # before any module of this package imports slixmpp

if TYPE_CHECKING:
    from imbridge.adapters.xmpp.adapter import XmppAdapter

    xmpp_adapter = XmppAdapter

__all__ = ["XmppAdapter", "XmppConfig", "xmpp_adapter"]


def __getattr__(name: str) -> object:
    """`XmppAdapter` (and the entry point's `xmpp_adapter`, the same class) is imported on
    first use, with slixmpp: loading the config model alone (`imbridge check`, through the
    `imbridge.adapter_configs` entry point) stays light."""
    if name in ("XmppAdapter", "xmpp_adapter"):
        from imbridge.adapters.xmpp.adapter import XmppAdapter  # noqa: PLC0415 - lazy

        return XmppAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
