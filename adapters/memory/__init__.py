"""The in-memory reference adapter: the core's tests use it instead of mocks, and it is
the worked example for anyone writing an adapter (see docs/adapters.md).

A `MemoryHub` plays the server: rooms hold posted messages, every adapter attached to the
hub sees what is posted in the rooms it joined, including its own posts (as real servers
echo them), and the relay marker travels with each post like a custom field would on the
wire. Tests act as users with `hub.post(...)`. A post whose room is an adapter's nick is
a private message to that relay account (as an IRC query to its nick is); the relay's
answer is a post in the room named after the person it answers.
"""

from imbridge.adapters.memory.adapter import MemoryAdapter
from imbridge.adapters.memory.config import MemoryCapabilities, MemoryConfig
from imbridge.adapters.memory.hub import MemoryHub
from imbridge.adapters.memory.proto.wire import Post

__all__ = ["MemoryAdapter", "MemoryCapabilities", "MemoryConfig", "MemoryHub", "Post"]
