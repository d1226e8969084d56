"""Passwords never cross the network in clear by accident: IRC without TLS but with a
password, and XMPP `tls: plain`, are refused for any server but loopback unless the
operator says `allow_cleartext: true`, and the error names the key and its line."""

from __future__ import annotations

import re

import pytest

from imbridge.config import parse_config
from imbridge.errors import ConfigError

IRC = """networks:
  corp-irc:
    type: irc
    host: {host}
    nick: relay
    tls: false
{extra}"""

XMPP = """networks:
  corp-xmpp:
    type: xmpp
    jid: relay@{host}
    password: pw
    tls: plain
{extra}"""

IRC_SECRETS = [
    "    password: pw\n",
    "    sasl: {username: relay, password: pw}\n",
    "    nickserv: {password: pw}\n",
]


@pytest.mark.parametrize("secret", IRC_SECRETS)
def test_irc_without_tls_refuses_to_send_a_password_to_a_remote_server(secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(IRC.format(host="irc.example.org", extra=secret))
    text = str(caught.value)
    assert "networks.corp-irc.tls (line 6): false sends the password to irc.example.org" in text
    assert "allow_cleartext: true" in text
    assert "pw" not in text.replace("password", "")


@pytest.mark.parametrize("secret", IRC_SECRETS)
def test_irc_without_tls_is_allowed_on_loopback_or_when_asked(secret: str) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        parse_config(IRC.format(host=host, extra=secret))
    parse_config(IRC.format(host="irc.example.org", extra=secret + "    allow_cleartext: true\n"))
    parse_config(IRC.format(host="irc.example.org", extra=""))  # no password to leak


def test_xmpp_plain_refuses_a_remote_server() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(XMPP.format(host="corp.example", extra=""))
    text = str(caught.value)
    assert "networks.corp-xmpp.tls (line 6): plain sends the password to corp.example" in text
    with pytest.raises(ConfigError, match=re.escape("to xmpp.corp.example unencrypted")):
        parse_config(XMPP.format(host="localhost", extra="    host: xmpp.corp.example\n"))


def test_xmpp_plain_is_allowed_on_loopback_or_when_asked() -> None:
    parse_config(XMPP.format(host="localhost", extra=""))
    parse_config(XMPP.format(host="corp.example", extra="    host: 127.0.0.1\n"))
    parse_config(XMPP.format(host="corp.example", extra="    allow_cleartext: true\n"))
