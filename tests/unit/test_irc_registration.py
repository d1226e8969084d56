"""Registration against recorded and scripted server lines: capabilities requested only
when offered, SASL PLAIN and EXTERNAL, a taken nick, and refusals that must stop (and be
told apart from throttling, which only slows reconnecting down)."""

from __future__ import annotations

from typing import Any

import pytest

from imbridge.adapters.irc.config import IrcConfig
from imbridge.adapters.irc.proto import wire
from imbridge.adapters.irc.proto.registration import Registration, RegistrationFailed, is_throttle


def config(**kw: Any) -> IrcConfig:
    return IrcConfig.model_validate({"type": "irc", "host": "irc.example", "nick": "relay",
                                     **kw})  # fmt: skip


def feed(reg: Registration, *raw: str) -> list[str]:
    out: list[str] = []
    for r in raw:
        line = wire.parse(r)
        assert line is not None
        out += reg.on_line(line)
    return out


def test_cap_ls_goes_before_nick_and_user_with_the_server_password() -> None:
    reg = Registration(config(password="s3cret", username="bridge", realname="The Relay"))
    assert reg.start() == ["CAP LS 302", "PASS :s3cret", "NICK relay",
                           "USER bridge 0 * :The Relay"]  # fmt: skip


def test_ngircd_offers_only_multi_prefix_so_only_that_is_requested() -> None:
    reg = Registration(config())
    reg.start()
    assert feed(reg, ":irc.localhost CAP * LS :multi-prefix") == ["CAP REQ :multi-prefix"]
    assert feed(reg, ":irc.localhost CAP relay ACK :multi-prefix") == ["CAP END"]
    feed(reg, ":irc.localhost 001 relay :Welcome")
    assert reg.done
    assert reg.enabled == {"multi-prefix"}


def test_inspircd_multiline_ls_is_gathered_before_requesting() -> None:
    reg = Registration(config())
    reg.start()
    assert feed(reg, ":s CAP * LS * :account-tag away-notify batch echo-message") == []
    assert feed(reg, ":s CAP * LS :message-tags multi-prefix server-time sasl=PLAIN") == [
        "CAP REQ :server-time message-tags echo-message multi-prefix away-notify account-tag"
    ]


def test_sasl_plain_authenticates_then_ends_negotiation() -> None:
    reg = Registration(config(sasl={"username": "relay", "password": "pw"}))
    reg.start()
    assert feed(reg, ":s CAP * LS :sasl=PLAIN,EXTERNAL") == ["CAP REQ :sasl"]
    assert feed(reg, ":s CAP * ACK :sasl") == ["AUTHENTICATE PLAIN"]
    assert feed(reg, "AUTHENTICATE +") == ["AUTHENTICATE AHJlbGF5AHB3"]
    assert feed(reg, ":s 903 relay :SASL authentication successful") == ["CAP END"]


def test_sasl_external_sends_an_empty_response() -> None:
    reg = Registration(config(tls_client_cert="/etc/cert.pem", sasl={"mechanism": "EXTERNAL"}))
    reg.start()
    feed(reg, ":s CAP * LS :sasl")
    assert feed(reg, ":s CAP * ACK :sasl") == ["AUTHENTICATE EXTERNAL"]
    assert feed(reg, "AUTHENTICATE +") == ["AUTHENTICATE +"]


@pytest.mark.parametrize(
    "lines",
    [
        [":s CAP * LS :multi-prefix"],  # SASL configured, not offered
        [":s CAP * LS :sasl=EXTERNAL"],  # mechanism not offered
        [
            ":s CAP * LS :sasl",
            ":s CAP * ACK :sasl",
            "AUTHENTICATE +",
            ":s 904 relay :SASL authentication failed",
        ],
        [":s 421 relay CAP :Unknown command"],  # pre-CAP server
    ],
)
def test_sasl_that_cannot_happen_fails_instead_of_going_on_unauthenticated(
    lines: list[str],
) -> None:
    reg = Registration(config(sasl={"username": "relay", "password": "pw"}))
    reg.start()
    with pytest.raises(RegistrationFailed):
        feed(reg, *lines)


def test_taken_nick_falls_back_to_alternatives_then_underscores() -> None:
    reg = Registration(config(alt_nicks=["relay2"]))
    reg.start()
    taken = ":s 433 * {} :Nickname already in use"
    assert feed(reg, taken.format("relay")) == ["NICK relay2"]
    assert feed(reg, taken.format("relay2")) == ["NICK relay_"]
    assert feed(reg, taken.format("relay_")) == ["NICK relay__"]
    (last,) = feed(reg, taken.format("relay__"))
    assert last.startswith("NICK relay")
    assert last[10:].isdigit()
    feed(reg, ":s 001 relay__ :Welcome")
    assert reg.nick == "relay__"


def test_refusals_are_fatal_and_throttling_is_recognised() -> None:
    reg = Registration(config())
    with pytest.raises(RegistrationFailed) as bad_pass:
        feed(reg, ":s 464 relay :Password incorrect")
    assert not bad_pass.value.throttled
    with pytest.raises(RegistrationFailed) as throttled:
        feed(reg, "ERROR :Trying to reconnect too fast.")
    assert throttled.value.throttled
    assert is_throttle("Closing Link: 127.0.0.1 (Throttled: Reconnecting too fast)")
    assert not is_throttle("Closing Link: relay (Quit: bye)")
