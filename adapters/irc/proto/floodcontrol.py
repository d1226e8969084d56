"""Flood control of one IRC connection, as plain arithmetic.

Two limits, both per connection and covering every command the relay sends after
registration (messages, JOIN, WHO, NAMES, TOPIC):

* a token bucket of lines (`imbridge.ratelimit`): `burst` at once, then `per_second`,
  which keeps the relay polite on servers that only slow a client down (ngircd: 3
  commands per read, 256 B/s);
* a window of lines and bytes the server has not yet confirmed: the relay marks its
  stream with `PING :imb<n>` and a PONG with that token proves the server has processed
  everything before it. Servers that disconnect a fast client do so on the size of its
  unprocessed input (InspIRCd: 8 KiB RecvQ, "Excess Flood" elsewhere), so capping what is
  outstanding, rather than guessing each server's rate, is what never gets the relay
  flooded off, while letting it run at whatever speed the server really allows.

No I/O here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class AckWindow:
    """Lines and bytes written but not yet confirmed by a PONG to one of our marks."""

    max_lines: int
    max_bytes: int
    lines: int = 0
    bytes: int = 0
    unmarked_lines: int = 0
    unmarked_bytes: int = 0
    next_token: int = 0
    marks: deque[tuple[str, int, int]] = field(default_factory=deque)

    def has_room(self, size: int) -> bool:
        """Whether a line of `size` bytes may be written now. An empty window always has
        room, so one over-long line can never block the stream."""
        if self.lines == 0:
            return True
        return self.lines < self.max_lines and self.bytes + size <= self.max_bytes

    def sent(self, size: int) -> None:
        self.lines += 1
        self.bytes += size
        self.unmarked_lines += 1
        self.unmarked_bytes += size

    def wants_mark(self) -> bool:
        """Mark once half the window is unmarked, so the PONG returns while the other half
        is still being written and the stream never stalls on a full window."""
        return (
            self.unmarked_lines * 2 >= self.max_lines or self.unmarked_bytes * 2 >= self.max_bytes
        )

    def mark(self) -> str:
        """A token for the PING to send now; it covers everything written so far."""
        self.next_token += 1
        token = f"imb{self.next_token}"
        self.marks.append((token, self.unmarked_lines, self.unmarked_bytes))
        self.unmarked_lines = self.unmarked_bytes = 0
        return token

    def acked(self, token: str) -> bool:
        """A PONG came back with `token`: what it covers (and every earlier mark, which
        the server processed before it) leaves the window. False for a foreign token."""
        if not any(t == token for t, _, _ in self.marks):
            return False
        while self.marks:
            t, lines, size = self.marks.popleft()
            self.lines -= lines
            self.bytes -= size
            if t == token:
                break
        return True

    def reset(self) -> None:
        """A new connection starts with nothing outstanding."""
        self.lines = self.bytes = self.unmarked_lines = self.unmarked_bytes = 0
        self.marks.clear()
