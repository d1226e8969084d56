"""Who is in which of the relay's channels, and under which services account, as the
incoming lines tell it. No I/O here.

Accounts come from IRCv3 `extended-join` (the JOIN names it), `account-notify` (ACCOUNT
on login and logout) and WHOX replies to the relay's own `WHO #chan %tna`. An account is
forgotten when its nick is no longer in any shared channel, so whoever takes the nick
next does not inherit it."""

from __future__ import annotations

from dataclasses import dataclass, field

from imbridge.adapters.irc.proto.names import irc_lower


@dataclass(slots=True)
class Roster:
    """Who is in which joined channel (folded names), so a QUIT or NICK, which names no
    channel, becomes a Leave in each channel the user shared with the relay."""

    members: dict[str, set[str]] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    """Folded nick → services account, for the nicks known to be logged in."""

    def set_account(self, nick: str, account: str | None) -> None:
        """`account` None (or `*`, `0` as servers write it) is logged out."""
        if account and account not in ("*", "0"):
            self.accounts[irc_lower(nick)] = account
        else:
            self.accounts.pop(irc_lower(nick), None)

    def _forget_if_gone(self, nick: str) -> None:
        if not self.channels_of(nick):
            self.accounts.pop(irc_lower(nick), None)

    def joined(self, channel: str) -> None:
        self.members.setdefault(irc_lower(channel), set())

    def left(self, channel: str) -> None:
        self.members.pop(irc_lower(channel), None)

    def add(self, channel: str, nick: str) -> None:
        self.members.setdefault(irc_lower(channel), set()).add(irc_lower(nick))

    def remove(self, channel: str, nick: str) -> None:
        self.members.get(irc_lower(channel), set()).discard(irc_lower(nick))
        self._forget_if_gone(nick)

    def channels_of(self, nick: str) -> list[str]:
        folded = irc_lower(nick)
        return [c for c, m in self.members.items() if folded in m]

    def quit(self, nick: str) -> list[str]:
        chans = self.channels_of(nick)
        for c in chans:
            self.members[c].discard(irc_lower(nick))
        self.accounts.pop(irc_lower(nick), None)
        return chans

    def rename(self, old: str, new: str) -> list[str]:
        chans = self.channels_of(old)
        for c in chans:
            self.members[c].discard(irc_lower(old))
            self.members[c].add(irc_lower(new))
        account = self.accounts.pop(irc_lower(old), None)
        if account is not None:
            self.accounts[irc_lower(new)] = account
        return chans

    def clear(self) -> None:
        self.members.clear()
        self.accounts.clear()
