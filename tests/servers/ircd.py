"""Real IRC servers on 127.0.0.1 for the IRC integration tests: ngircd and InspIRCd, each
with relaxed flood limits (fast tests) or the server's stock flood rules (to prove the
adapter's own flood control), plus `IrcUser`, an ordinary `irc`-library client playing
a person in a channel.

Adapted from the loopback launchers: the config is written into a temporary state
directory and the server runs in the foreground as a direct child. `restart()` stops and
starts it on the same ports, which is how a test shows that nothing is lost across a
server restart. A missing binary fails the run: a green run must mean the adapter met a
real server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from irc.client_aio import AioConnection, AioReactor

from imbridge import testing
from tests.servers.process import ServerProcess, free_port

eventually = testing.eventually  # the name these tests knew; the helper is imbridge.testing's

__all__ = ["inspircd", "inspircd_stock", "ngircd", "ngircd_stock"]

HOST = "127.0.0.1"
SERVER_NAME = "irc.localhost"
Impl = Literal["ngircd", "inspircd"]
RELAXED_FLOOD = {"burst": 10_000, "per_second": 10_000, "burst_bytes": 1_000_000,
                 "bytes_per_second": 1_000_000, "max_unacked_lines": 1_000,
                 "max_unacked_bytes": 256_000}  # fmt: skip
Limits = Literal["relaxed", "default"]


def binary(name: str) -> str:
    extra = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)
    if not found:
        pytest.fail(f"{name} is not installed (apt-get install {name}): IRC tests need it")
    return found


def _ngircd_conf(port: int, tls_port: int, cert: Path, key: Path, limits: Limits) -> str:
    lines = [
        "[Global]", f"\tName = {SERVER_NAME}", "\tInfo = loopback test server",
        "\tAdminInfo1 = test", "\tAdminInfo2 = loopback", "\tAdminEMail = test@localhost",
        f"\tListen = {HOST}", f"\tPorts = {port}", "\tMotdPhrase = loopback test server",
        "[Limits]",
        "\tMaxConnectionsIP = 0",  # stock 5 per IP: too few for a test's users
        "\tMaxJoins = 0",
        "\tMaxNickLength = 30",  # stock 9 (RFC 2812)
        "\tPingTimeout = 120", "\tPongTimeout = 20",
    ]  # fmt: skip
    if limits == "relaxed":
        lines.append("\tMaxPenaltyTime = 0")  # no 1 s throttle, no penalty per error
    lines += [
        "[Options]", "\tDNS = no", "\tIdent = no", "\tPAM = no",  # PAM=yes refuses us
        "\tOperCanUseMode = yes",
        "[SSL]", f"\tCertFile = {cert}", f"\tKeyFile = {key}", f"\tPorts = {tls_port}",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _inspircd_conf(port: int, tls_port: int, cert: Path, key: Path, *, limits: Limits,
                   state: Path) -> str:  # fmt: skip
    if limits == "relaxed":
        flood = ('threshold="100000" commandrate="1000000" fakelag="yes" '
                 'recvq="1M" softsendq="1M" hardsendq="16M"')  # fmt: skip
    else:  # the values of InspIRCd's shipped example config
        flood = ('threshold="10" commandrate="1000" fakelag="yes" '
                 'recvq="8K" softsendq="8K" hardsendq="1M"')  # fmt: skip
    out = [
        f'<server name="{SERVER_NAME}" description="loopback test server" network="TestNet">',
        '<admin name="test" nick="test" email="test@localhost">',
        f'<bind address="{HOST}" port="{port}" type="clients">',
        '<module name="ssl_gnutls">',
        f'<sslprofile name="Clients" provider="gnutls" certfile="{cert}" keyfile="{key}" '
        'dhfile="" requestclientcert="no">',
        f'<bind address="{HOST}" port="{tls_port}" type="clients" sslprofile="Clients">',
    ]
    for mod in ("cap", "ircv3", "ircv3_capnotify", "ircv3_servertime", "ircv3_echomessage",
                "ircv3_msgid", "ircv3_ctctags", "ircv3_batch", "ircv3_labeledresponse",
                "ircv3_accounttag", "namesx", "uhnames"):  # fmt: skip
        out.append(f'<module name="{mod}">')
    out += [
        f'<connect name="loopback" allow="{HOST}" resolvehostnames="no" useident="no" '
        f'timeout="60" pingfreq="120" localmax="1000" globalmax="1000" maxchans="1000" {flood}>',
        '<channels users="1000" opers="1000">',
        '<limits maxnick="30">',
        f'<pid file="{state / "inspircd.pid"}">',
        f'<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" '
        f'target="{state / "inspircd.log"}">',
        f'<files motd="{state / "motd.txt"}">',
        f'<dns server="{HOST}" timeout="1">',
        '<options syntaxhints="no" announcets="yes">',
    ]
    (state / "motd.txt").write_text("loopback test server\n")
    return "\n".join(out) + "\n"


def registers(port: int) -> bool:
    """A client completes registration (001) on `port`."""
    nick = "probe" + secrets.token_hex(3)
    try:
        with socket.create_connection((HOST, port), timeout=3) as s:
            s.sendall(f"NICK {nick}\r\nUSER probe 0 * :probe\r\n".encode())
            buf = b""
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
                if f" 001 {nick} ".encode() in buf:
                    s.sendall(b"QUIT :probe\r\n")
                    return True
    except OSError:
        return False
    return False


@dataclass
class Ircd(ServerProcess):
    """One IRC server and what a client needs to reach it."""

    log_names: ClassVar[tuple[str, ...]] = ("stdout.log", "inspircd.log")

    impl: Impl
    limits: Limits
    state: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = None
    _channels: int = 0

    @property
    def label(self) -> str:
        return self.impl

    @property
    def cert(self) -> Path:
        return self.state / "tls" / "cert.pem"

    @property
    def conf(self) -> Path:
        return self.state / f"{self.impl}.conf"

    def write_config(self) -> None:
        tls = self.state / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        key = tls / "key.pem"
        if not self.cert.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                 "-keyout", str(key), "-out", str(self.cert), "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1"],
                check=True, capture_output=True,
            )  # fmt: skip
        if self.impl == "ngircd":
            text = _ngircd_conf(self.port, self.tls_port, self.cert, key, self.limits)
        else:
            text = _inspircd_conf(self.port, self.tls_port, self.cert, key,
                                  limits=self.limits, state=self.state)  # fmt: skip
        self.conf.write_text(text)

    def start(self, timeout: float = 20.0) -> None:
        if self.impl == "ngircd":
            argv = [binary("ngircd"), "-n", "-f", str(self.conf)]
        else:
            argv = [binary("inspircd"), "--nofork", f"--config={self.conf}"]
            if os.geteuid() == 0:
                argv.append("--runasroot")
        self.spawn(argv, cwd=self.state)
        self.await_ready(lambda: registers(self.port), timeout)

    def channel(self, prefix: str = "chan") -> str:
        """A fresh channel name, so tests never see each other's traffic."""
        self._channels += 1
        return f"#{prefix}{self._channels}-{secrets.token_hex(2)}"

    def network(self, **extra: Any) -> dict[str, Any]:
        """A plain-text `type: irc` network section reaching this server: on a relaxed
        server with flood control opened up, on a stock one with the adapter's defaults
        (which are what must hold there)."""
        section = testing.irc_network(self)
        if self.limits == "relaxed":
            section["flood"] = RELAXED_FLOOD
        return section | extra


def launch(impl: Impl, limits: Limits, state: Path) -> Ircd:
    server = Ircd(impl, limits, state)
    server.write_config()
    server.start()
    return server


def _session_server(impl: Impl, limits: Limits,
                    factory: pytest.TempPathFactory) -> Iterator[Ircd]:  # fmt: skip
    server = launch(impl, limits, factory.mktemp(f"{impl}-{limits}"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ngircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ircd]:
    yield from _session_server("ngircd", "relaxed", tmp_path_factory)


@pytest.fixture(scope="session")
def ngircd_stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ircd]:
    yield from _session_server("ngircd", "default", tmp_path_factory)


@pytest.fixture(scope="session")
def inspircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ircd]:
    yield from _session_server("inspircd", "relaxed", tmp_path_factory)


@pytest.fixture(scope="session")
def inspircd_stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ircd]:
    yield from _session_server("inspircd", "default", tmp_path_factory)


@dataclass
class Seen:
    """One line a user saw: its command, who sent it, where, and the text."""

    kind: str
    nick: str
    target: str
    text: str
    tags: dict[str, str]


class IrcUser:
    """A person on IRC, played by the `irc` library's asyncio client."""

    def __init__(self, server: Ircd, nick: str) -> None:
        self.server = server
        self.nick = nick
        self.reactor = AioReactor(loop=asyncio.get_running_loop())
        self.conn: AioConnection = self.reactor.server()
        self.seen: list[Seen] = []
        self.joined: set[str] = set()
        self.disconnected = False
        for kind in ("pubmsg", "pubnotice", "action", "privmsg", "privnotice", "join",
                     "part", "quit", "kick", "topic", "nick", "error", "disconnect"):  # fmt: skip
            self.conn.add_global_handler(kind, self._keep, -10)
        self.conn.add_global_handler("welcome", self._welcome)

    def _keep(self, conn: AioConnection, event: Any) -> None:
        if conn is not self.conn:
            return
        nick = event.source.nick if event.source and "!" in event.source else ""
        text = event.arguments[0] if event.arguments else ""
        tags = {t["key"]: t["value"] or "" for t in (event.tags or [])}
        self.seen.append(Seen(event.type, nick, event.target or "", text, tags))
        if event.type == "join" and nick == self.nick:
            self.joined.add(event.target.lower())
        if event.type == "disconnect":
            self.disconnected = True

    def _welcome(self, conn: AioConnection, event: Any) -> None:
        if conn is self.conn:
            self.welcomed = True

    @classmethod
    async def connect(cls, server: Ircd, nick: str | None = None) -> IrcUser:
        # A suffix, so a test never meets a namesake that an earlier test's QUIT has not
        # yet freed on the shared server.
        user = cls(server, (nick or "u") + secrets.token_hex(2))
        user.welcomed = False
        await user.conn.connect(server.host, server.port, user.nick)
        await eventually(lambda: user.welcomed, timeout=15, what=f"{user.nick} registered")
        return user

    async def join(self, channel: str) -> None:
        self.conn.join(channel)
        await eventually(lambda: channel.lower() in self.joined, what=f"join {channel}")

    def say(self, channel: str, text: str) -> None:
        self.conn.privmsg(channel, text)

    def act(self, channel: str, text: str) -> None:
        self.conn.action(channel, text)

    def raw(self, line: str) -> None:
        self.conn.send_raw(line)

    def messages(self, channel: str, nick: str | None = None) -> list[Seen]:
        """PRIVMSG, NOTICE and ACTION lines seen in `channel` (from `nick`, if given)."""
        return [s for s in self.seen
                if s.kind in ("pubmsg", "pubnotice", "action")
                and s.target.lower() == channel.lower()
                and (nick is None or s.nick == nick)]  # fmt: skip

    def texts(self, channel: str, nick: str | None = None) -> list[str]:
        return [s.text for s in self.messages(channel, nick)]

    async def close(self) -> None:
        if self.conn.connected:
            self.conn.disconnect("bye")
        await asyncio.sleep(0)
