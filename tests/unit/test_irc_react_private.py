"""IRC reactions (IRCv3 `+draft/react` on a TAGMSG, `+draft/reply` naming the message)
and private messages to the relay's nick, from recorded InspIRCd lines (InspIRCd passes
client tags with `ircv3_ctctags`; ngircd passes none, so it never sends a reaction)."""

from __future__ import annotations

from pathlib import Path

from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.roster import Roster
from imbridge.adapters.irc.proto.translate import REPLY_TAG, Context, to_core
from imbridge.events import Event, EventId, Message, MessageKind, Reaction

LINES = (
    (Path(__file__).parents[1] / "data" / "irc" / "inspircd-react-private.txt")
    .read_text(encoding="utf-8")
    .splitlines()
)
KNOWN = {"m-orig": EventId("e-orig")}  # the id map, as the adapter's cursors would answer


def events_of(number: int) -> list[Event]:
    line = wire.parse(LINES[number].encode())
    assert line is not None
    ref = line.tags.get(REPLY_TAG)
    ctx = Context(network="irc", own_nick="relay", rooms={"#room": "#room"},
                  reply_to=KNOWN.get(ref) if ref else None)  # fmt: skip
    return to_core(line, ctx, Roster())


def test_tagmsg_reaction_names_the_message_it_answers() -> None:
    (event,) = events_of(1)
    assert isinstance(event, Reaction)
    assert (event.target, event.key, event.removed) == ("e-orig", "👍", False)
    assert (event.origin.room, event.origin.sender.id) == ("#room", "bob")
    assert event.origin.remote_id == "m-react"


def test_unreact_tag_is_the_removal() -> None:
    (event,) = events_of(2)
    assert isinstance(event, Reaction)
    assert (event.target, event.key, event.removed) == ("e-orig", "👍", True)


def test_other_tagmsg_and_reaction_to_an_unknown_message_give_nothing() -> None:
    assert events_of(3) == []  # a typing notice
    line = wire.parse(LINES[1].replace("m-orig", "m-never-seen").encode())
    assert line is not None
    ctx = Context(network="irc", own_nick="relay", rooms={"#room": "#room"})
    assert to_core(line, ctx, Roster()) == []


def test_privmsg_to_the_relay_is_a_direct_message_from_the_sender() -> None:
    (event,) = events_of(4)
    assert isinstance(event, Message)
    assert event.origin.direct
    assert (event.origin.room, event.origin.sender.id) == ("carol", "carol")
    assert event.text == "hi relay, anyone there?"
    (action,) = events_of(7)  # nick case does not matter; /me stays an emote
    assert isinstance(action, Message)
    assert (action.origin.direct, action.kind, action.text) == (True, MessageKind.EMOTE, "waves")


def test_notices_and_ctcp_queries_to_the_relay_are_not_messages() -> None:
    assert events_of(5) == []  # services talk in notices, and a notice is never answered
    assert events_of(6) == []  # CTCP VERSION is a client probe


def test_channel_message_is_not_direct() -> None:
    (event,) = events_of(0)
    assert isinstance(event, Message)
    assert not event.origin.direct
