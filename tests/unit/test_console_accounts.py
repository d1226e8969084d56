"""Console accounts from the command line, sessions, and where the console may run."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import aiohttp
import pytest

from imbridge.cli import main
from imbridge.config import parse_config
from imbridge.console.server import ConsoleRefused, exposure_problem
from imbridge.console.sessions import Session, SessionCodec
from imbridge.console.users import USERS_FILE
from imbridge.daemon import Daemon
from tests.servers.process import free_port


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"bridge: {{state_dir: '{tmp_path / 'state'}'}}\nnetworks: {{a: {{type: memory}}}}\n{extra}"
    )
    return path


def test_user_add_stores_an_argon2id_hash_0600_never_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret password\n"))
    assert main(["console", "user", "add", "alice", "--role", "auditor", "-c", str(path)]) == 0
    assert "added alice (auditor)" in capsys.readouterr().out
    users = tmp_path / "state" / USERS_FILE
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert "s3cret" not in text
    assert json.loads(text)["users"]["alice"]["hash"].startswith("$argon2id$")
    assert main(["console", "-c", str(path), "user", "list"]) == 0
    assert "alice" in capsys.readouterr().out


def test_user_commands_refuse_bad_input_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["console", "user", "add", "bob", "--role", "admin", "-c", str(path)]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough pass\n"))
    assert main(["console", "user", "add", "bad name", "--role", "admin", "-c", str(path)]) == 2
    assert main(["console", "user", "del", "nobody", "-c", str(path)]) == 2
    assert main(["console", "user", "list"]) == 2


def test_passwd_and_del(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = config_file(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("first password\n"))
    assert main(["console", "user", "add", "carol", "--role", "reviewer", "-c", str(path)]) == 0
    users = tmp_path / "state" / USERS_FILE
    before = json.loads(users.read_text())["users"]["carol"]["hash"]
    monkeypatch.setattr("sys.stdin", io.StringIO("second password\n"))
    assert main(["console", "user", "passwd", "carol", "-c", str(path)]) == 0
    assert json.loads(users.read_text())["users"]["carol"]["hash"] != before
    assert main(["console", "user", "del", "carol", "-c", str(path)]) == 0
    assert json.loads(users.read_text())["users"] == {}


def test_a_session_cookie_cannot_be_forged_or_outlive_its_idle_time() -> None:
    codec = SessionCodec(b"k" * 32, idle_seconds=60)
    value = codec.encode(Session("sid", "alice", "stamp", seen=1000.0))
    assert codec.decode(value, 1059.0) == Session("sid", "alice", "stamp", 1000.0)
    assert codec.decode(value, 1061.0) is None
    body, mac = value.split(".")
    assert codec.decode(f"{body}x.{mac}", 1000.0) is None
    other = SessionCodec(b"o" * 32, idle_seconds=60)
    assert other.decode(value, 1000.0) is None
    assert codec.csrf_ok(Session("sid"), codec.csrf(Session("sid")))
    assert not codec.csrf_ok(Session("other"), codec.csrf(Session("sid")))


@pytest.mark.parametrize(
    ("listen", "console", "refused"),
    [
        ("127.0.0.1:1", "{}", False),
        ("[::1]:1", "{}", False),
        ("0.0.0.0:1", "{}", True),
        ("0.0.0.0:1", "{public_url: 'http://r.example/'}", True),
        ("0.0.0.0:1", "{public_url: 'https://r.example/'}", False),
        ("10.0.0.5:1", "{allow_insecure_http: true}", False),
    ],
)
def test_off_loopback_the_console_needs_https_or_an_explicit_opt_out(
    listen: str, console: str, refused: bool
) -> None:
    config = parse_config(f"networks: {{a: {{type: memory}}}}\nconsole: {console}\n")
    assert (exposure_problem(config, listen) is not None) is refused


async def test_the_daemon_serves_the_console_under_its_listener(tmp_path: Path) -> None:
    port = free_port()
    config = parse_config(
        f"bridge: {{state_dir: '{tmp_path}', http: {{listen: '127.0.0.1:{port}'}}}}\n"
        "networks: {a: {type: memory}}\nconsole: {enabled: true}\n"
    )
    async with Daemon(config), aiohttp.ClientSession() as http:
        resp = await http.get(f"http://127.0.0.1:{port}/console/search", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/console/login")
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status == 200


async def test_the_daemon_refuses_an_exposed_console(tmp_path: Path) -> None:
    config = parse_config(
        f"bridge: {{state_dir: '{tmp_path}', http: {{listen: '0.0.0.0:{free_port()}'}}}}\n"
        "networks: {a: {type: memory}}\nconsole: {enabled: true}\n"
    )
    daemon = Daemon(config)
    with pytest.raises(ConsoleRefused, match="without TLS"):
        await daemon.start()
    await daemon.stop(drain=0)
