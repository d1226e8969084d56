"""What the relay sends for reactions, built without a server: XEP-0444's whole set per
message (a key leaves only with its last reactor), and Matrix's one annotation per key,
redacted with its last reactor."""

from __future__ import annotations

from imbridge.adapter import Outgoing
from imbridge.adapters.irc.proto.lines import Mask
from imbridge.adapters.irc.proto.reactions import gathered, is_msgid, summary, summary_line, tagmsg
from imbridge.adapters.matrix.proto.reactions import Annotation
from imbridge.adapters.matrix.proto.translate import SendWire
from imbridge.adapters.matrix.proto.translate import to_wire as matrix_wire
from imbridge.adapters.xmpp.proto.reactions import RelaySets
from imbridge.adapters.xmpp.proto.stanzas import NS_HINTS, NS_REACTIONS, q
from imbridge.adapters.xmpp.proto.translate import to_wire as xmpp_wire
from imbridge.events import EventId, Origin, Reaction, RemoteId, Sender

ORIGIN = Origin(network="mx", room="!r", sender=Sender(id="@bob:hs", name="bob"))
ADD = Reaction(id=EventId("e1"), origin=ORIGIN, target=EventId("m"), key="👍")


def test_relay_set_is_the_union_of_everyone_it_speaks_for() -> None:
    sets = RelaySets()
    sets.apply("", "sid1", "mx\nbob", "👍", removed=False)
    sets.apply("", "sid1", "irc\ncarol", "👍", removed=False)
    sets.apply("", "sid1", "irc\ncarol", "🎉", removed=False)
    sets.apply("", "sid1", "irc\ncarol", "🎉", removed=False)  # a retry: no change
    assert sets.keys("", "sid1") == ("👍", "🎉")
    sets.apply("", "sid1", "mx\nbob", "👍", removed=True)
    assert sets.keys("", "sid1") == ("👍", "🎉")  # carol's 👍 is still there
    sets.apply("", "sid1", "irc\ncarol", "👍", removed=True)
    assert sets.keys("", "sid1") == ("🎉",)
    sets.apply("", "sid1", "irc\ncarol", "🎉", removed=True)
    assert sets.keys("", "sid1") == ()
    assert len(sets) == 0  # an empty set is the default, not kept


def test_relay_sets_survive_a_restart_and_stay_bounded() -> None:
    sets = RelaySets(limit=2)
    sets.apply("puppet-a", "sid1", "w", "👍", removed=False)
    sets.apply("puppet-b", "sid1", "w", "🎉", removed=False)
    sets.apply("puppet-a", "sid2", "w", "🚀", removed=False)
    again = RelaySets.loads(sets.dumps(), limit=2)
    assert again.keys("puppet-a", "sid1") == ()  # the least recently changed went
    assert again.keys("puppet-b", "sid1") == ("🎉",)
    assert again.keys("puppet-a", "sid2") == ("🚀",)
    assert RelaySets.loads("not json").keys("puppet-a", "sid2") == ()


def test_xmpp_reaction_stanza_carries_the_whole_set_on_the_copy() -> None:
    item = Outgoing(room="r@muc", event=ADD, target=RemoteId("sid1"), txn_id="t1")
    element = xmpp_wire(item, identity="relay@hs", reactions=("👍", "🎉"))
    held = element.find(q(NS_REACTIONS, "reactions"))
    assert held is not None
    assert held.get("id") == "sid1"
    assert [r.text for r in held] == ["👍", "🎉"]
    assert element.find(q(NS_HINTS, "store")) is not None
    assert element.get("type") == "groupchat"
    assert element.find("{jabber:client}body") is None  # no line for clients without it
    emptied = xmpp_wire(item, identity="relay@hs", reactions=())
    cleared = emptied.find(q(NS_REACTIONS, "reactions"))
    assert cleared is not None
    assert list(cleared) == []


def test_matrix_reaction_annotates_the_relayed_copy() -> None:
    item = Outgoing(room="!r", event=ADD, target=RemoteId("$copy"), txn_id="t1")
    wire = matrix_wire(item)
    assert isinstance(wire, SendWire)
    assert wire.event_type == "m.reaction"
    assert wire.content["m.relates_to"] == {
        "rel_type": "m.annotation",
        "event_id": "$copy",
        "key": "👍",
    }


def test_matrix_annotation_is_redacted_only_with_its_last_reactor() -> None:
    held = Annotation("$ann", ("mx\nbob",)).adding("irc\ncarol").adding("irc\ncarol")
    assert held.by == ("mx\nbob", "irc\ncarol")
    assert not held.removing("mx\nbob").orphaned
    assert held.removing("mx\nbob").removing("irc\ncarol").orphaned
    assert Annotation.loads(held.dumps()) == held
    assert not Annotation.loads(None).posted
    assert not Annotation().removing("x").orphaned  # never posted: nothing to redact


def irc_reaction(nick: str, key: str, *, removed: bool = False) -> Reaction:
    origin = Origin(network="mx", room="!r", sender=Sender(id=f"@{nick}:hs", name=nick))
    return Reaction(id=EventId(f"e{nick}{key}"), origin=origin, target=EventId("m"), key=key,
                    removed=removed)  # fmt: skip


def test_irc_summary_gathers_five_reactions_into_one_line() -> None:
    came = [("alice", "👍"), ("bob", "👍"), ("alice", "🎉"), ("carol", "👍"), ("bob", "👍")]
    gathered_ = [gathered(irc_reaction(n, k)) for n, k in came]
    assert summary(gathered_, "ship it?") == '* alice, bob, carol reacted 👍 ×3, 🎉 to "ship it?"'  # noqa: RUF001 - the sign users see
    line = summary_line(gathered_, "ship it?", "#chan", mask=Mask("relay"))
    assert line.startswith("NOTICE #chan :* alice, bob, carol reacted")
    crowd = [gathered(irc_reaction(f"person{i:03d}", "👍")) for i in range(200)]
    long = summary_line(crowd, "ship it?", "#chan", mask=Mask("relay"))
    assert long.endswith(" …")
    assert len(long.encode()) <= 510 - Mask("relay").prefix_bytes()
    assert "\n" not in long


def test_irc_tagmsg_names_the_copy_by_its_msgid() -> None:
    line = tagmsg(irc_reaction("bob", "👍"), "#chan", "abc123", {})
    assert line == "@+draft/react=👍;+draft/reply=abc123 TAGMSG #chan"
    gone = tagmsg(irc_reaction("bob", "👍", removed=True), "#chan", "abc123", {})
    assert gone.startswith("@+draft/unreact=👍;+draft/reply=abc123 ")
    assert is_msgid("abc123")
    assert not is_msgid("imb01a2b3c4d5e6f00112233")  # the relay's own txn id, no msgid
    assert not is_msgid(None)
