"""What travels on the memory hub: one `Post` per message, edit, delete or reaction,
with the relay marker as a field, as a custom field would travel on a real wire."""

from __future__ import annotations

from dataclasses import dataclass

from imbridge.events import RemoteId


@dataclass(frozen=True, slots=True)
class Post:
    """A message as the hub's "server" holds it."""

    remote_id: RemoteId
    room: str
    sender: str
    text: str
    relayed: bool
    kind: str = "message"  # message | edit | delete | reaction | unreact (text: the key)
    # | join | leave | nick (text: the new name) | kick (text: by whom)
    target: RemoteId | None = None
    reply_to: RemoteId | None = None
