"""XMPP adapter: MUC relay on slixmpp with stream management, corrections, retractions,
replies and XML-safe stanzas, as one client account or as an external component with a
JID per relayed user. The `imbridge.adapters` entry point `xmpp` names `xmpp_adapter`,
which builds the adapter the section's `mode` asks for."""

from __future__ import annotations

from typing import ClassVar

from imbridge.adapter import Cursors, NetworkConfig, RateLimit

from .adapter import XmppAdapter
from .component import ComponentAdapter
from .config import XmppConfig

__all__ = ["ComponentAdapter", "XmppAdapter", "XmppAdapterFactory", "XmppConfig", "xmpp_adapter"]


class XmppAdapterFactory:
    """What the registry loads for `type: xmpp`: one YAML type, two adapters. The core
    builds adapters by calling what the entry point names, and knows nothing of modes."""

    config_model: ClassVar[type[NetworkConfig]] = XmppConfig
    default_rate_limit: ClassVar[RateLimit] = XmppAdapter.default_rate_limit

    def __call__(self, name: str, config: NetworkConfig, cursors: Cursors) -> XmppAdapter:
        if isinstance(config, XmppConfig) and config.mode == "component":
            return ComponentAdapter(name, config, cursors)
        return XmppAdapter(name, config, cursors)


xmpp_adapter = XmppAdapterFactory()
