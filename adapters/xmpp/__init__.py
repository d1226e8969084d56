"""XMPP adapter: MUC relay on slixmpp with stream management, corrections, retractions,
replies and XML-safe stanzas. The `imbridge.adapters` entry point `xmpp` names
`XmppAdapter`."""

from .adapter import XmppAdapter
from .config import XmppConfig

__all__ = ["XmppAdapter", "XmppConfig"]
