"""IRC line parsing and building: recorded server lines parse as the servers meant them,
and no builder ever lets a parameter end the line or shift the parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from imbridge.adapters.irc.proto import wire

DATA = Path(__file__).parent.parent / "data" / "irc"


def test_tagged_privmsg_from_inspircd_parses_tags_source_and_trailing() -> None:
    raw = (b"@time=2026-11-24T23:50:27.839Z;msgid=199~1~3;+imbridge/relayed;+draft/reply=abc "
           b":alice!alice@127.0.0.1 PRIVMSG #room :tagged text")  # fmt: skip
    line = wire.parse(raw)
    assert line is not None
    assert line.command == "PRIVMSG"
    assert line.params == ("#room", "tagged text")
    assert line.source == wire.Source("alice", "alice", "127.0.0.1")
    assert line.tags == {"time": "2026-11-24T23:50:27.839Z", "msgid": "199~1~3",
                         "+imbridge/relayed": "", "+draft/reply": "abc"}  # fmt: skip
    assert wire.server_time(line.tags) == datetime(2026, 11, 24, 23, 50, 27, 839000, UTC)


@pytest.mark.parametrize(
    "name",
    [
        "ngircd-channel.txt",
        "inspircd-channel.txt",
        "ngircd-registration.txt",
        "inspircd-registration.txt",
    ],
)
def test_every_recorded_server_line_parses(name: str) -> None:
    for raw in (DATA / name).read_bytes().split(b"\r\n"):
        if raw:
            line = wire.parse(raw)
            assert line is not None, raw
            assert line.command


def test_parse_handles_latin1_bytes_and_garbage() -> None:
    line = wire.parse(b":bob!b@h PRIVMSG #c :caf\xe9")
    assert line is not None
    assert line.params[1] == "café"
    assert wire.parse(b"") is None
    assert wire.parse(b":onlyprefix") is None
    assert wire.parse(b"@a=b") is None
    assert wire.parse(b"PING :tok").params == ("tok",)  # type: ignore[union-attr]


def test_tag_values_round_trip_through_escaping() -> None:
    value = "a;b c\\d\re\nf"
    assert wire.unescape_tag(wire.escape_tag(value)) == value
    assert wire.parse_tags("k=a\\:b\\sc") == {"k": "a;b c"}


@pytest.mark.parametrize("bad", ["#a b", ":x", "", "#a\r", "#a\n", "#a\0"])
def test_build_refuses_a_middle_parameter_that_would_shift_or_end_the_line(bad: str) -> None:
    with pytest.raises(wire.UnsafeLine):
        wire.build("PRIVMSG", bad, trailing="hi")


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b"])
def test_build_refuses_line_breaks_in_the_trailing_parameter(bad: str) -> None:
    with pytest.raises(wire.UnsafeLine):
        wire.build("PRIVMSG", "#c", trailing=bad)


def test_build_refuses_lines_over_512_bytes_but_counts_tags_apart() -> None:
    with pytest.raises(wire.UnsafeLine):
        wire.build("PRIVMSG", "#c", trailing="x" * 500)
    line = wire.build("PRIVMSG", "#c", trailing="x" * 490, tags={"+imbridge/relayed": ""})
    assert line.startswith("@+imbridge/relayed PRIVMSG #c :x")


def test_source_of_a_server_and_of_a_user() -> None:
    assert wire.Source.parse("irc.localhost").is_server
    user = wire.Source.parse("alice!~a@127.0.0.1")
    assert not user.is_server
    assert str(user) == "alice!~a@127.0.0.1"
