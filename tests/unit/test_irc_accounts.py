"""IRC senders are their services account where the server says so, and the nick only
their display name; without a known account the nick is the id and the sender is marked
unauthenticated, for policy (`from: {authenticated: true}`) and in the archive.

The test servers have no services (InspIRCd relays accounts from a services package,
ngircd has none), so nobody there is ever logged in: the translation is checked here on
lines as the IRCv3 specifications record them (account-tag, extended-join,
account-notify, WHOX's RPL_WHOSPCRPL)."""

from __future__ import annotations

import pytest

from imbridge import codec
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.proto.translate import Context, to_core
from imbridge.config import parse_config
from imbridge.errors import ConfigError
from imbridge.events import Join, Message, Sender
from imbridge.policy import Destination, compile_policy, decide

ROOMS = {"#ops": "#ops"}


def feed(lines: list[str], *, account_tag: bool = False) -> list[Message | Join]:
    roster = Roster()
    roster.joined("#ops")
    out: list[Message | Join] = []
    for raw in lines:
        line = wire.parse(raw)
        assert line is not None, raw
        ctx = Context(
            network="irc", own_nick="relay", rooms=ROOMS,
            account_tag=account_tag, accounts=roster.accounts,
        )  # fmt: skip
        out += [e for e in to_core(line, ctx, roster) if isinstance(e, Message | Join)]
    return out


def senders(events: list[Message | Join]) -> list[Sender]:
    return [e.origin.sender for e in events if isinstance(e, Message)]


def test_the_account_tag_names_the_sender_and_the_nick_is_only_shown() -> None:
    got = senders(
        feed(
            [
                "@account=hax0r :user!u@h PRIVMSG #ops :Now I'm logged in.",
                ":mallory!u@h PRIVMSG #ops :no tag, so no account",
            ],
            account_tag=True,
        )
    )
    assert got == [
        Sender(id="hax0r", name="user"),
        Sender(id="mallory", name="mallory", authenticated=False),
    ]


def test_a_tag_is_believed_only_once_negotiated() -> None:
    # Without account-tag negotiated, a tag on the line proves nothing.
    (sender,) = senders(feed(["@account=boss :mallory!u@h PRIVMSG #ops :hi"]))
    assert sender == Sender(id="mallory", name="mallory", authenticated=False)


def test_extended_join_and_account_notify_follow_logins_nick_changes_and_logouts() -> None:
    got = senders(
        feed([
            ":alice!u@h JOIN #ops alice-acct :Alice Liddell",
            ":alice!u@h PRIVMSG #ops :one",
            ":alice!u@h NICK :ally",
            ":ally!u@h PRIVMSG #ops :two",
            ":ally!u@h ACCOUNT *",
            ":ally!u@h PRIVMSG #ops :three",
            ":ally!u@h ACCOUNT ally-acct",
            ":ally!u@h PRIVMSG #ops :four",
            ":bob!u@h JOIN #ops * :Bob",
            ":bob!u@h PRIVMSG #ops :five",
        ])
    )  # fmt: skip
    assert got == [
        Sender(id="alice-acct", name="alice"),
        Sender(id="alice-acct", name="ally"),
        Sender(id="ally", name="ally", authenticated=False),
        Sender(id="ally-acct", name="ally"),
        Sender(id="bob", name="bob", authenticated=False),
    ]


def test_whox_replies_tell_who_was_there_before_the_relay() -> None:
    got = senders(
        feed([
            ":irc.example 353 relay = #ops :relay @carol dave",
            ":irc.example 354 relay 152 carol carol-acct",
            ":irc.example 354 relay 152 dave 0",
            ":irc.example 354 relay 999 dave forged-by-another-query",
            ":carol!u@h PRIVMSG #ops :hello",
            ":dave!u@h PRIVMSG #ops :hello",
        ])
    )  # fmt: skip
    assert got == [
        Sender(id="carol-acct", name="carol"),
        Sender(id="dave", name="dave", authenticated=False),
    ]


def test_a_nick_taken_after_its_owner_left_does_not_inherit_the_account() -> None:
    got = senders(
        feed([
            ":irc.example 354 relay 152 boss boss-acct",
            ":irc.example 353 relay = #ops :relay boss",
            ":boss!u@h PART #ops :bye",
            ":boss!u@h JOIN #ops",  # someone else, on a server without extended-join
            ":boss!u@h PRIVMSG #ops :wire the money",
        ])
    )  # fmt: skip
    assert got == [Sender(id="boss", name="boss", authenticated=False)]


POLICY = """
networks:
  irc: {type: memory}
  out: {type: memory}
policy:
  default: deny
  rules:
    - name: ops-staff
      action: allow
      from: {network: irc, user: "alice*", authenticated: true}
"""


def test_a_rule_can_require_an_authenticated_sender() -> None:
    policy = compile_policy(parse_config(POLICY).policy)
    dest = Destination(network="out", room="#x")
    (real,) = feed(["@account=alice-acct :alice!u@h PRIVMSG #ops :hi"], account_tag=True)
    (impostor,) = feed([":alice!u@h PRIVMSG #ops :hi"], account_tag=True)
    assert decide(real, dest, policy).rule == "ops-staff"
    assert decide(impostor, dest, policy).rule == "default"


def test_authenticated_is_for_senders_only() -> None:
    text = POLICY.replace("from: {network: irc, user: \"alice*\", authenticated: true}",
                          "to: {authenticated: true}")  # fmt: skip
    with pytest.raises(ConfigError, match=r"to\.authenticated cannot match"):
        parse_config(text)


def test_the_archive_records_that_no_account_was_known() -> None:
    (anonymous,) = feed([":mallory!u@h PRIVMSG #ops :hi"], account_tag=True)
    (known,) = feed(["@account=a :alice!u@h PRIVMSG #ops :hi"], account_tag=True)
    assert codec.to_dict(anonymous)["origin"]["authenticated"] is False
    assert "authenticated" not in codec.to_dict(known)["origin"]
    assert codec.from_dict(codec.to_dict(anonymous)) == anonymous
