"""A real Prosody on 127.0.0.1 for the XMPP integration tests (session-scoped).

Adapted from the loopback launchers: the config is written into a temporary state
directory, accounts are created with `prosodyctl register`, and `prosody -F` runs as a
direct child. `restart()` stops and starts it on the same ports and data, which is how
tests check that nothing is lost across a server restart. Without a `prosody` binary the
fixture fails the run rather than skipping: a green run must mean the adapter was tested.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import slixmpp

from imbridge import testing
from tests.servers.process import ServerProcess, free_port

eventually = testing.eventually  # the name these tests knew; the helper is imbridge.testing's

__all__ = ["prosody"]

HOST = "127.0.0.1"
DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"
COMPONENT_DOMAIN = "bridge.localhost"
"""An external component (XEP-0114) for the bridge's component mode."""
UPLOAD_DOMAIN = "upload.localhost"
"""HTTP File Upload (XEP-0363, mod_http_file_share), found through disco#items of the
domain like any client finds it, served over plain HTTP on loopback."""
UPLOAD_LIMIT = 1024 * 1024
"""The service's max-file-size: small, so tests can go over it cheaply."""


def _binary(name: str) -> str:
    extra = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"])
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)
    if not found:
        pytest.fail(f"{name} is not installed (apt-get install prosody): XMPP tests need it")
    return found


def _lua(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _features(port: int) -> bool:
    """True once c2s answers a stream header with <stream:features>."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall(
                (
                    f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' "
                    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                ).encode()
            )
            buf = b""
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and b"</stream:features>" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            return b"</stream:features>" in buf
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Prosody(ServerProcess):
    """One Prosody instance and what a client needs to reach it."""

    log_names: ClassVar[tuple[str, ...]] = ("prosody.stdout.log", "prosody.log")

    state: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    component_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    component_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    domain: str = DOMAIN
    muc_domain: str = MUC_DOMAIN
    component_domain: str = COMPONENT_DOMAIN
    upload_domain: str = UPLOAD_DOMAIN
    host: str = HOST
    proc: subprocess.Popen[bytes] | None = None
    _rooms: int = 0

    @property
    def config(self) -> Path:
        return self.state / "prosody.cfg.lua"

    @property
    def http_url(self) -> str:
        """Base URL of Prosody's HTTP server, where uploaded files are served."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def cert(self) -> Path:
        return self.state / "tls" / "cert.pem"

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
        (self.state / "data").mkdir(exist_ok=True)
        modules = ["roster", "saslauth", "tls", "disco", "ping", "smacks", "mam", "version"]
        lines = [
            f"run_as_root = {'true' if os.geteuid() == 0 else 'false'}",
            f"pidfile = {_lua(self.state / 'prosody.pid')}",
            f"data_path = {_lua(self.state / 'data')}",
            "plugin_paths = { }",
            f'log = {{ {{ levels = {{ min = "info" }}, to = "file", '
            f"filename = {_lua(self.state / 'prosody.log')} }} }}",
            f"interfaces = {{ {_lua(HOST)} }}",
            f"local_interfaces = {{ {_lua(HOST)} }}",
            f"c2s_ports = {{ {self.port} }}",
            f"c2s_direct_tls_ports = {{ {self.tls_port} }}",
            f"component_ports = {{ {self.component_port} }}",
            f"component_interfaces = {{ {_lua(HOST)} }}",
            "s2s_ports = { }",
            f"http_ports = {{ {self.http_port} }}",
            f"http_interfaces = {{ {_lua(HOST)} }}",
            "https_ports = { }",
            # Upload URLs name the loopback address: `upload.localhost` need not resolve.
            f"http_external_url = {_lua(self.http_url + '/')}",
            "modules_enabled = { " + " ".join(f"{_lua(m)};" for m in modules) + " }",
            'modules_disabled = { "s2s" }',
            'authentication = "internal_hashed"',
            'storage = "internal"',
            "c2s_require_encryption = false",
            "allow_unencrypted_plain_auth = true",
            f"certificates = {_lua(tls)}",
            f"ssl = {{ certificate = {_lua(self.cert)}; key = {_lua(key)}; }}",
            'archive_expires_after = "1d"',
            # The internal store's default quota is 10 000 items per archive; past it,
            # every message reloads, trims and rewrites the room's whole archive
            # (15 ms a message on this machine), which a long bench or soak would
            # measure instead of the relay.
            "storage_archive_item_limit = 10000000",
            f"VirtualHost {_lua(DOMAIN)}",
            f'Component {_lua(MUC_DOMAIN)} "muc"',
            '  modules_enabled = { "muc_mam" }',
            "  muc_room_locking = false",
            "  restrict_room_creation = false",
            "  muc_room_default_persistent = true  -- rooms and archives outlive a restart",
            "  muc_room_default_change_subject = true",
            "  max_history_messages = 50",
            f"Component {_lua(COMPONENT_DOMAIN)}",
            f"  component_secret = {_lua(self.component_secret)}",
            f'Component {_lua(UPLOAD_DOMAIN)} "http_file_share"',
            f"  http_host = {_lua(HOST)}  -- HTTP is routed by Host: the URL's, not the domain",
            f"  http_file_share_size_limit = {UPLOAD_LIMIT}",
            f"  http_file_share_daily_quota = {100 * UPLOAD_LIMIT}",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o600)

    def start(self) -> None:
        self.spawn([_binary("prosody"), "-F", "--config", str(self.config)])
        self.await_ready(
            lambda: (
                _features(self.port)
                and _listening(self.component_port)
                and _listening(self.http_port)
            ),
            30,
        )

    def register(self, name: str | None = None) -> tuple[str, str]:
        """A new account: (bare JID, password)."""
        name = name or f"u{secrets.token_hex(4)}"
        password = secrets.token_hex(8)
        subprocess.run(
            [_binary("prosodyctl"), "--config", str(self.config), "register", name, DOMAIN,
             password],
            check=True, capture_output=True,
        )  # fmt: skip
        return f"{name}@{DOMAIN}", password

    def room(self, prefix: str = "room") -> str:
        """A fresh room JID (created by whoever joins it first)."""
        self._rooms += 1
        return f"{prefix}{self._rooms}-{secrets.token_hex(3)}@{MUC_DOMAIN}"


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    server = Prosody(state=tmp_path_factory.mktemp("prosody"))
    server.write_config()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class XmppUser:
    """An ordinary XMPP user for tests: a plain slixmpp client that joins rooms and keeps
    every groupchat message it sees (as raw XML elements, to check ids and payloads)."""

    def __init__(self, server: Prosody, jid: str, password: str) -> None:
        self.server = server
        self.client = slixmpp.ClientXMPP(jid, password)
        for plugin in (
            "xep_0030",
            "xep_0045",
            "xep_0199",
            "xep_0198",
            "xep_0359",
            "xep_0308",
            "xep_0424",
            "xep_0313",
            "xep_0461",
            "xep_0066",
        ):
            self.client.register_plugin(plugin)
        self.client.enable_direct_tls = self.client.enable_starttls = False
        self.client.enable_plaintext = True
        self.client.plugin["feature_mechanisms"].unencrypted_plain = True
        self.messages: list[ET.Element] = []
        self.client.add_event_handler("groupchat_message", self._keep)
        self.client.add_event_handler("groupchat_subject", self._keep)
        self.client.add_event_handler("message_retract", self._keep)

    def _keep(self, msg: Any) -> None:
        # A retraction with a body raises both groupchat_message and message_retract
        # for the same stanza; the user saw one message.
        if not self.messages or self.messages[-1] is not msg.xml:
            self.messages.append(msg.xml)

    @classmethod
    async def login(cls, server: Prosody) -> XmppUser:
        jid, password = await asyncio.to_thread(server.register)
        user = cls(server, jid, password)
        await user.connect()
        return user

    async def connect(self) -> None:
        started = asyncio.get_running_loop().create_future()

        def on_start(_event: object) -> None:
            if not started.done():
                started.set_result(None)

        self.client.add_event_handler("session_start", on_start, disposable=True)
        self.client.connect(self.server.host, self.server.port)
        await asyncio.wait_for(started, 15)

    async def join(self, room: str, nick: str) -> None:
        await self.client.plugin["xep_0045"].join_muc_wait(
            slixmpp.JID(room), nick, maxstanzas=0, timeout=15
        )

    def say(self, room: str, body: str, **extra: str) -> str:
        """Sends a groupchat message; returns its id."""
        msg = self.client.make_message(mto=room, mbody=body, mtype="groupchat")
        msg_id = self.client.new_id()
        msg["id"] = msg_id
        msg["origin_id"]["id"] = msg_id
        for key, value in extra.items():
            msg[key]["id"] = value
        msg.send()
        return str(msg_id)

    def bodies(self, room: str) -> list[str]:
        out = []
        for m in self.messages:
            if m.get("from", "").partition("/")[0] == room:
                body = m.findtext("{jabber:client}body")
                if body is not None:
                    out.append(body)
        return out

    async def archive(self, room: str) -> list[ET.Element]:
        """Every message the room's MAM archive (XEP-0313) holds, oldest first: what
        the room really kept, independent of who was connected when."""
        out: list[ET.Element] = []
        after: str | None = None
        while True:
            rsm: dict[str, Any] = {"max": 200}
            if after:
                rsm["after"] = after
            iq = await self.client.plugin["xep_0313"].retrieve(
                jid=slixmpp.JID(room), rsm=rsm, timeout=15
            )
            results = iq["mam"]["results"]
            for result in results:
                inner = result.xml.find(
                    "{urn:xmpp:mam:2}result/{urn:xmpp:forward:0}forwarded/{jabber:client}message"
                )
                if inner is not None:
                    out.append(inner)
            fin = iq.xml.find("{urn:xmpp:mam:2}fin")
            last = (
                fin.findtext(
                    "{http://jabber.org/protocol/rsm}set/{http://jabber.org/protocol/rsm}last"
                )
                if fin is not None
                else None
            )
            if not results or fin is None or fin.get("complete") in ("true", "1") or not last:
                return out
            after = last

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.client.disconnect(), 5)
        except TimeoutError:
            self.client.abort()
        task = self.client._run_out_filters
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
