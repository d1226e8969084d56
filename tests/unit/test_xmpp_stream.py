"""What the XMPP stream does for every stanza, in both modes: only what the relay needs.
slixmpp matches each incoming stanza against every handler and runs each outgoing one
through every filter, a coroutine filter costing a task and a timer per message."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import structlog

from imbridge.adapters.xmpp.component import Component
from imbridge.adapters.xmpp.config import XmppConfig
from imbridge.adapters.xmpp.delivery import Delivery
from imbridge.adapters.xmpp.session import UNUSED_HANDLERS, ClientLogin

CLIENT = {"type": "xmpp", "jid": "relay@example.org", "password": "pw"}
COMPONENT = {
    "type": "xmpp", "mode": "component", "component": "bridge.example.org",
    "secret": "s3cret", "host": "127.0.0.1",
}  # fmt: skip


def stream(mode: str) -> Any:
    log = structlog.get_logger()
    if mode == "client":
        return ClientLogin("xm", XmppConfig.model_validate(CLIENT), log=log).make(lambda _: None)
    config = XmppConfig.model_validate(COMPONENT)
    return Component("xm", config, rooms={}, delivery=Delivery(), log=log).make(lambda _: None)


@pytest.mark.parametrize("mode", ["client", "component"])
async def test_no_stanza_waits_on_a_coroutine_filter(mode: str) -> None:
    filters = stream(mode)._XMLStream__filters
    slow = [f.__qualname__ for f in filters["out"] if inspect.iscoroutinefunction(f)]
    assert slow == []


@pytest.mark.parametrize("mode", ["client", "component"])
async def test_handlers_nobody_listens_to_are_gone(mode: str) -> None:
    names = {h.name for h in stream(mode)._XMLStream__handlers}
    assert names.isdisjoint(UNUSED_HANDLERS)
    assert "Ping" in names  # the server's pings are still answered
