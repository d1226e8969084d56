"""A real Synapse homeserver on 127.0.0.1 for the Matrix integration tests.

Adapted from the loopback launchers: one state directory per server, a client-only HTTP
listener on a kernel-chosen port, shared-secret registration for test accounts, and
either relaxed rate limits (most tests) or Synapse's stock limits with a faster message
limiter (the 429 test). Media are Synapse's default, authenticated (Matrix 1.11), as
users get them: a plain download link opens for no one. A missing Synapse fails the
run: the fixture raises, it never skips. Synapse is started once per session; tests use
fresh users and rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import nio
import pytest

from imbridge import testing
from tests.servers.process import ServerProcess, free_port

DictCursors = testing.DictCursors
wait_for = testing.eventually  # the name these tests knew; the helper is imbridge.testing's

T = TypeVar("T")

__all__ = ["synapse", "synapse_appservice", "synapse_limited"]

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
_RELAXED = {"per_second": 1000, "burst_count": 100000}
RELAXED_LIMITS: dict[str, Any] = {  # every client-facing limiter (synapse/config/ratelimiting.py)
    "rc_message": _RELAXED,
    "rc_registration": _RELAXED,
    "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
    "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
    "rc_joins_per_room": _RELAXED,
    "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
    "rc_room_creation": _RELAXED,
    "rc_admin_redaction": _RELAXED,
    "rc_media_create": _RELAXED,
    "rc_profile": _RELAXED,
}
# Stock limits everywhere, except that the stock message limiter (0.2/s, burst 10) would
# make a 300-message burst take 25 minutes; 10/s with burst 10 still answers most of a
# burst with 429 + retry_after_ms, which is what the test must prove the relay honours.
LIMITED_LIMITS: dict[str, Any] = {"rc_message": {"per_second": 10, "burst_count": 10}}


def synapse_python() -> Path:
    return Path(
        os.environ.get(
            "IMBRIDGE_SYNAPSE_PYTHON",
            os.path.expanduser("~/.cache/imbridge/synapse-venv/bin/python"),
        )
    )


def _http_json(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback http
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            return int(r.status), dict(json.load(r))
    except urllib.error.HTTPError as e:
        try:
            return int(e.code), dict(json.load(e))
        except ValueError:
            return int(e.code), {}


@dataclass(frozen=True, slots=True)
class MatrixUser:
    user_id: str
    password: str
    access_token: str
    device_id: str


@dataclass
class SynapseServer(ServerProcess):
    """One Synapse process and its state directory; restartable on the same state."""

    log_names: ClassVar[tuple[str, ...]] = ("synapse.stdout.log", "homeserver.log")

    state: Path
    overrides: dict[str, Any]
    port: int = field(default_factory=free_port)
    secret: str = field(default_factory=lambda: secrets.token_hex(12))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        py = synapse_python()
        if not py.exists():
            raise RuntimeError(
                f"Synapse's python not found at {py}: install Synapse "
                "(see .ci/run) or set IMBRIDGE_SYNAPSE_PYTHON"
            )
        self.state.mkdir(parents=True, exist_ok=True)
        main_conf = self.state / "homeserver.yaml"
        if not main_conf.exists():
            subprocess.run(
                [str(py), "-m", "synapse.app.homeserver", "--generate-config",
                 "--server-name", SERVER_NAME, "--report-stats=no",
                 "--config-path", str(main_conf), "--data-directory", str(self.state),
                 "--config-directory", str(self.state)],
                check=True, cwd=self.state, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        conf: dict[str, Any] = {
            "listeners": [{
                "port": self.port, "bind_addresses": [HOST], "type": "http", "tls": False,
                "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
            }],
            "public_baseurl": self.url + "/",
            "registration_shared_secret": self.secret,
            "enable_registration": False,
            "bcrypt_rounds": 4,  # stock 12 costs ~0.3 s per password hash
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "report_stats": False,
            "enable_metrics": False,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            **self.overrides,
        }  # fmt: skip
        (self.state / "test-overrides.yaml").write_text(json.dumps(conf, indent=1))
        self.spawn(
            [str(py), "-m", "synapse.app.homeserver", "-c", str(main_conf),
             "-c", str(self.state / "test-overrides.yaml")],
            cwd=self.state,
        )  # fmt: skip
        self.await_ready(self._answers, timeout, poll=0.1)

    def _answers(self) -> bool:
        try:
            return _http_json("GET", self.url + "/_matrix/client/versions")[0] == 200
        except OSError:
            return False

    def register(self, name: str | None = None, *, admin: bool = False) -> MatrixUser:
        """A new account through the shared-secret admin API (not rate-limited)."""
        name = name or f"u{secrets.token_hex(4)}"
        password = secrets.token_hex(8)
        _, nonce = _http_json("GET", self.url + "/_synapse/admin/v1/register")
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce["nonce"].encode(), name.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))  # fmt: skip
        code, r = _http_json("POST", self.url + "/_synapse/admin/v1/register", {
            "nonce": nonce["nonce"], "username": name, "password": password,
            "admin": admin, "mac": mac.hexdigest(),
        })  # fmt: skip
        if code != 200:
            raise RuntimeError(f"registering {name}: {code} {r}")
        return MatrixUser(r["user_id"], password, r["access_token"], r["device_id"])

    def api(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, token: str
    ) -> dict[str, Any]:
        """A client-server API call as a test user; raises on an error status."""
        code, r = _http_json(method, self.url + path, body, token)
        if code != 200:
            raise RuntimeError(f"{method} {path}: {code} {r}")
        return r


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """Synapse with every rate limit out of reach: tests measure the bridge, not limits."""
    server = SynapseServer(tmp_path_factory.mktemp("synapse"), dict(RELAXED_LIMITS))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def synapse_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """Synapse with stock limits (message limiter sped up, see LIMITED_LIMITS)."""
    server = SynapseServer(tmp_path_factory.mktemp("synapse-limited"), dict(LIMITED_LIMITS))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True, slots=True)
class Appservice:
    """The bridge's side of the appservice registration Synapse was started with: a
    bridge listening on `listen` with `network()` as its `mx` network is the appservice."""

    homeserver: str
    listen: str
    bot: str
    as_token: str
    hs_token: str
    token_dir: Path
    name: str = "mx"

    def network(self, **extra: Any) -> dict[str, Any]:
        return {
            "type": "matrix", "homeserver": self.homeserver, "user_id": self.bot,
            "mode": "appservice",
            "appservice": {"as_token_file": str(self.token_dir / "as.token"),
                           "hs_token_file": str(self.token_dir / "hs.token")},
            **extra,
        }  # fmt: skip

    def ghost(self, network: str, sender: str) -> str:
        from imbridge.adapters.matrix.proto.ghostnames import ghost_id  # noqa: PLC0415

        return ghost_id("_imb_", network, sender, SERVER_NAME)


def with_appservice(
    state: Path, tokens: Path, overrides: dict[str, Any]
) -> tuple[SynapseServer, Appservice]:
    """A Synapse (not started) whose config loads the bridge's appservice registration,
    written by the bridge's own `registration` (what `imbridge matrix registration`
    prints); bridges under test listen on `Appservice.listen`."""
    from imbridge.adapters.matrix import registration  # noqa: PLC0415
    from imbridge.adapters.matrix.config import MatrixConfig  # noqa: PLC0415
    from imbridge.config.load import parse_config  # noqa: PLC0415

    state.mkdir(parents=True, exist_ok=True)
    server = SynapseServer(state, dict(overrides))
    listen = f"{HOST}:{free_port()}"
    as_token, hs_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    testing.write_secret(tokens / "as.token", as_token)
    testing.write_secret(tokens / "hs.token", hs_token)
    setup = Appservice(server.url, listen, f"@imbridge:{SERVER_NAME}", as_token, hs_token, tokens)
    config = parse_config(json.dumps({
        "bridge": {"state_dir": str(state / "bridge"), "http": {"listen": listen}},
        "networks": {setup.name: setup.network()},
    }))  # fmt: skip
    net = config.networks[setup.name]
    assert isinstance(net, MatrixConfig)
    body = registration.registration(setup.name, net, state_dir=state, listen=listen)
    (state / "appservice.yaml").write_text(json.dumps(body))
    server.overrides["app_service_config_files"] = [str(state / "appservice.yaml")]
    return server, setup


@pytest.fixture(scope="session")
def synapse_appservice(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SynapseServer, Appservice]]:
    """Synapse (relaxed limits) with the bridge's appservice registration loaded, as an
    operator installs it, written before Synapse starts."""
    server, setup = with_appservice(
        tmp_path_factory.mktemp("synapse-as"), tmp_path_factory.mktemp("as-tokens"),
        RELAXED_LIMITS,
    )  # fmt: skip
    server.start()
    try:
        yield server, setup
    finally:
        server.stop()


class Watcher:
    """A real matrix-nio client acting as a user: sends, and records every timeline
    event of every room it is in, so tests can poll for what a person would see."""

    def __init__(self, server: SynapseServer, user: MatrixUser) -> None:
        self.server = server
        self.user = user
        self.client = nio.AsyncClient(server.url, user.user_id, device_id=user.device_id)
        self.client.access_token = user.access_token
        self.client.user_id = user.user_id
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        resp = await self.client.sync(timeout=0, full_state=True)
        assert isinstance(resp, nio.SyncResponse), resp
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            resp = await self.client.sync(timeout=1000)
            if isinstance(resp, nio.SyncResponse):
                for room_id, info in resp.rooms.join.items():
                    self.events.setdefault(room_id, []).extend(
                        e.source for e in info.timeline.events
                    )
            else:
                await asyncio.sleep(0.2)

    def messages(self, room_id: str, *, sender: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.events.get(room_id, [])
            if e.get("type") == "m.room.message" and (sender is None or e["sender"] == sender)
        ]  # fmt: skip

    def bodies(self, room_id: str, *, sender: str | None = None) -> list[str]:
        return [str(e["content"].get("body")) for e in self.messages(room_id, sender=sender)]

    async def create_room(self, *, invite: list[str] | None = None, **kw: Any) -> str:
        resp = await self.client.room_create(invite=invite or [], **kw)
        assert isinstance(resp, nio.RoomCreateResponse), resp
        return str(resp.room_id)

    async def join(self, room: str) -> str:
        resp = await self.client.join(room)
        assert isinstance(resp, nio.JoinResponse), resp
        return str(resp.room_id)

    async def send(self, room_id: str, content: dict[str, Any], tx_id: str | None = None) -> str:
        resp = await self.client.room_send(room_id, "m.room.message", content, tx_id=tx_id)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return str(resp.event_id)

    async def text(self, room_id: str, body: str, **extra: Any) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": body, **extra})

    async def upload(self, data: bytes, name: str, mimetype: str = "image/png") -> str:
        """Uploads `data` to the homeserver's media store; returns its mxc:// URI."""
        up, _ = await self.client.upload(
            io.BytesIO(data), content_type=mimetype, filename=name, filesize=len(data)
        )
        assert isinstance(up, nio.UploadResponse), up
        return str(up.content_uri)
