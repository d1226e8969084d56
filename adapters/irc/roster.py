"""Who is in which of the relay's channels, as the incoming lines tell it. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field

from imbridge.adapters.irc.config import irc_lower


@dataclass(slots=True)
class Roster:
    """Who is in which joined channel (folded names), so a QUIT or NICK, which names no
    channel, becomes a Leave in each channel the user shared with the relay."""

    members: dict[str, set[str]] = field(default_factory=dict)

    def joined(self, channel: str) -> None:
        self.members.setdefault(irc_lower(channel), set())

    def left(self, channel: str) -> None:
        self.members.pop(irc_lower(channel), None)

    def add(self, channel: str, nick: str) -> None:
        self.members.setdefault(irc_lower(channel), set()).add(irc_lower(nick))

    def remove(self, channel: str, nick: str) -> None:
        self.members.get(irc_lower(channel), set()).discard(irc_lower(nick))

    def channels_of(self, nick: str) -> list[str]:
        folded = irc_lower(nick)
        return [c for c, m in self.members.items() if folded in m]

    def quit(self, nick: str) -> list[str]:
        chans = self.channels_of(nick)
        for c in chans:
            self.members[c].discard(irc_lower(nick))
        return chans

    def rename(self, old: str, new: str) -> list[str]:
        chans = self.channels_of(old)
        for c in chans:
            self.members[c].discard(irc_lower(old))
            self.members[c].add(irc_lower(new))
        return chans

    def clear(self) -> None:
        self.members.clear()
