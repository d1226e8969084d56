"""How a direct message finds its person: a puppet JID maps back to the sender and
network it stands for, and the words people write to a relay are recognised as Matrix
user ids or bare JIDs only when they are ones."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from imbridge.adapters.matrix.adapter import MATRIX_USER
from imbridge.adapters.xmpp.adapter import BARE_JID
from imbridge.adapters.xmpp.puppets import MAX_LOCALPART, escape_part, localpart, person_of


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=20))
def test_a_puppet_localpart_names_its_sender_and_network_again(sender: str, network: str) -> None:
    local = localpart(sender, network)
    # one that had to be shortened ends in a hash and cannot be read back
    assume(len(escape_part(sender)) + len(escape_part(network)) + 8 < MAX_LOCALPART)
    assert person_of(local) == (sender, network)


def test_a_shortened_puppet_localpart_or_any_other_names_no_one() -> None:
    long = localpart("x" * (MAX_LOCALPART + 10), "irc")
    assert person_of(long) is None
    assert person_of("imbridge") is None
    assert person_of("carol") is None
    assert person_of("\\40\\zz\\40irc") is None


def test_matrix_user_ids_are_told_from_other_words() -> None:
    for word in ("@bob:example.org", "@b.o_b=2f:matrix.example.org:8448", "@1:localhost"):
        assert MATRIX_USER.fullmatch(word), word
    for word in ("bob", "@bob", "bob:example.org", "#room:example.org", "@bob:exa mple"):
        assert not MATRIX_USER.fullmatch(word), word


def test_bare_jids_are_told_from_other_words() -> None:
    for word in ("carol@xmpp.example", "c.arol+x@localhost"):
        assert BARE_JID.fullmatch(word), word
    for word in ("carol", "carol@xmpp.example/phone", "@bob:example.org", "a@b:c"):
        assert not BARE_JID.fullmatch(word), word
