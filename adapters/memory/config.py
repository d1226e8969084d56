"""The `networks.<name>` section with `type: memory`. Its capabilities are configurable,
so one core test can pose as a network without edits, another as one without replies."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from imbridge.adapter import NetworkConfig


class MemoryCapabilities(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    edits: bool = True
    deletes: bool = True
    replies: bool = True
    attachments: bool = True
    formatting: Literal["plain", "irc", "xhtml", "html"] = "html"
    max_text_bytes: int = 65536
    send_window: int = 1
    reactions: Literal["native", "text", "none"] = "none"
    edit_window: float = 0.0
    max_lines: int = 0
    line_bytes: int = 0
    direct_sends: bool = False
    """Takes direct messages to one person: `nick@<network> text` to another network's
    relay names them, and a send goes to a post in the room named by their nick."""


class MemoryConfig(NetworkConfig):
    type: Literal["memory"] = "memory"
    nick: str = "imbridge"
    capabilities: MemoryCapabilities = MemoryCapabilities()
    feed_file: Path | None = None
    feed_room: str = "#feed"
    delivery_file: Path | None = None
