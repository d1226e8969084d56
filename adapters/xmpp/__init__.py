"""XMPP adapter: MUC relay on slixmpp with stream management, corrections, retractions,
replies and XML-safe stanzas, as one client account or as an external component with a
JID per relayed user (the section's `mode`). The `imbridge.adapters` entry point `xmpp`
names `xmpp_adapter`, the adapter class itself."""

from __future__ import annotations

from .adapter import XmppAdapter
from .config import XmppConfig

__all__ = ["XmppAdapter", "XmppConfig", "xmpp_adapter"]

xmpp_adapter = XmppAdapter
"""The entry point's target (pyproject's `xmpp = "imbridge.adapters.xmpp:xmpp_adapter"`)."""
