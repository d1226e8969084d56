"""Component mode's pure parts: puppet JIDs are valid, stable and distinct for any sender;
nicks are ones a server accepts; and the `mode: component` section of the config is
validated with YAML paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slixmpp.stringprep import nodeprep, resourceprep

from imbridge.adapters.xmpp.puppets import (
    LISTENER,
    MAX_LOCALPART,
    localpart,
    nick_candidates,
)
from imbridge.config.load import parse_config
from imbridge.errors import ConfigError
from imbridge.events import Origin, Sender
from imbridge.testing import write_secret

ids = st.text(min_size=1, max_size=300)
names = st.text(min_size=1, max_size=40)


@given(ids, names)
def test_localpart_is_a_valid_jid_node_that_nodeprep_leaves_unchanged(
    sender: str, network: str
) -> None:
    local = localpart(sender, network)
    assert 0 < len(local.encode()) <= MAX_LOCALPART
    assert local.isascii()
    assert nodeprep(local) == local  # type: ignore[no-untyped-call]  # slixmpp
    assert local != LISTENER


@given(ids, names)
def test_localpart_is_stable(sender: str, network: str) -> None:
    assert localpart(sender, network) == localpart(str(sender), str(network))


@given(ids, names, ids, names)
def test_distinct_senders_get_distinct_localparts(s1: str, n1: str, s2: str, n2: str) -> None:
    if (s1, n1) != (s2, n2):
        assert localpart(s1, n1) != localpart(s2, n2)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("Alice", "irc"), ("alice", "irc")),  # nodeprep would fold case
        (("a@b", "c"), ("a", "b@c")),  # the separator cannot be forged from either side
        (("ﬁ", "irc"), ("fi", "irc")),  # nor NFKC-normalise one into the other
        (("a\\40b", "irc"), ("a@b", "irc")),  # an escape-looking id stays itself
    ],
)
def test_lookalike_senders_stay_apart(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert localpart(*first) != localpart(*second)


def test_localpart_reads_as_the_sender_once_unescaped() -> None:
    assert localpart("alice", "irc") == "alice\\40irc"
    assert localpart("@bob:example.org", "matrix") == "\\40bob\\3aexample.org\\40matrix"


@given(st.text(max_size=80), ids, names)
def test_nick_candidates_are_accepted_unchanged_and_end_in_plain_ascii(
    name: str, sender: str, network: str
) -> None:
    nicks = nick_candidates(name, sender, network)
    assert len(set(nicks)) == len(nicks)
    for nick in nicks:
        assert nick.strip() == nick
        assert resourceprep(nick) == nick  # type: ignore[no-untyped-call]  # slixmpp
        assert not any(c in nick for c in "\u202e\u200b\x00\n")
    assert nicks[-1].isascii()


def test_nick_prefers_the_display_name_then_names_the_network() -> None:
    assert nick_candidates("Carol", "carol", "irc")[:2] == ("Carol", "Carol [irc]")
    assert nick_candidates("", "carol", "irc")[0] == "carol"  # no display name: the id


def origin(name: str = "carol", network: str = "irc") -> Origin:
    return Origin(network=network, room="#ops", sender=Sender(id=name.lower(), name=name))


# -- config: `mode: component` -------------------------------------------------------------

BASE = """
bridge: {{state_dir: ./state}}
networks:
  mem: {{type: memory}}
  xm:
    type: xmpp
{xmpp}
gateways:
  g:
    rooms: [{{network: mem, room: "#a"}}, {{network: xm, room: a@conference.localhost}}]
"""


def parse(xmpp: str, tmp_path: Path) -> ConfigError | None:
    body = "\n".join("    " + line for line in xmpp.strip().splitlines())
    try:
        parse_config(BASE.format(xmpp=body), base=tmp_path)
    except ConfigError as exc:
        return exc
    return None


def messages(error: ConfigError | None) -> list[str]:
    assert error is not None
    return [f"{i.path}: {i.message}" for i in error.issues]


def test_component_mode_accepts_a_secret_file_and_defaults_the_port(tmp_path: Path) -> None:
    write_secret(tmp_path / "component.secret", "s3cret\n")
    text = "mode: component\ncomponent: bridge.localhost\nsecret_file: component.secret\n"
    text += "host: 127.0.0.1"
    config = parse_config(
        BASE.format(xmpp="\n".join("    " + x for x in text.splitlines())), base=tmp_path
    )
    xm = config.networks["xm"]
    assert getattr(xm, "server_port", None) == 5347
    assert "s3cret" not in repr(xm)


def test_component_mode_reports_missing_and_foreign_keys_at_their_path(tmp_path: Path) -> None:
    error = parse("mode: component\njid: relay@localhost\npassword: pw\nsecret: hunter2", tmp_path)
    found = messages(error)
    assert "networks.xm.component: is required in component mode" in found
    assert "networks.xm.host: is required in component mode" in found
    assert "networks.xm.jid: applies to client mode only (mode: component)" in found
    assert not any("hunter2" in m for m in found)


def test_client_mode_refuses_component_keys_and_still_needs_its_login(tmp_path: Path) -> None:
    found = messages(parse("component: bridge.localhost", tmp_path))
    assert "networks.xm.component: applies to component mode only (mode: client)" in found
    assert "networks.xm.jid: is required in client mode" in found
    found = messages(parse("mode: component\ncomponent: a@b\nsecret: x\nhost: h", tmp_path))
    assert found == ["networks.xm.component: must be a domain like bridge.example.org"]
