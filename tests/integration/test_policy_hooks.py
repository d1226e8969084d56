"""Policy hooks through the whole daemon on a real IRC server (ngircd), watched by
ordinary IRC users: a DLP service on loopback (aiohttp, in this test) holds back lines
with a marker word, the sender is told which hook did it and the archive names it; with
the service stopped, `on_error: deny` keeps everything back and `on_error: allow` lets
it through, each counted in /metrics; and a hook installed as a Python package (the
worked example) redacts card numbers that a regular expression cannot tell apart."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from imbridge.commands.policy import policy_test
from imbridge.config.load import load_config
from imbridge.config.schema import Config
from imbridge.daemon import Daemon
from imbridge.testing import archive_hits as search
from tests.servers.ircd import Ircd, IrcUser, eventually
from tests.servers.process import free_port

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "policy-hook-example"
MARKER = "BLUEBIRD"


class Dlp:
    """A DLP service: denies any text holding the marker, for every destination."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/check"
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    async def check(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if body["version"] == 2:  # a batch (the default): a decision per event
            answers = [{"event_id": e["event_id"], **self.decide(e)} for e in body["events"]]
            return web.json_response({"version": 2, "events": answers})
        return web.json_response({"version": 1, **self.decide(body)})

    def events(self) -> list[dict[str, Any]]:
        """Every event asked about, from batches and single requests alike."""
        return [e for r in self.requests for e in (r["events"] if r["version"] == 2 else [r])]

    @staticmethod
    def decide(event: dict[str, Any]) -> dict[str, Any]:
        if any(MARKER in t for t in event["texts"]):
            return {"action": "deny", "reason": "marker"}
        return {"decisions": [{**d, "action": "allow"} for d in event["destinations"]]}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/check", self.check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def dlp() -> AsyncIterator[Dlp]:
    service = Dlp()
    await service.start()
    yield service
    await service.stop()


def write_config(path: Path, ngircd: Ircd, rooms: tuple[str, str], hooks: list[dict[str, Any]],
                 *, listen: str) -> Config:  # fmt: skip
    a, b = rooms
    path.write_text(json.dumps({
        "bridge": {"state_dir": str(path.parent / "state"), "log": {"level": "warning"},
                   "http": {"listen": listen}},
        "networks": {"irc": ngircd.network()},
        "gateways": {"g": {"rooms": [{"network": "irc", "room": a},
                                     {"network": "irc", "room": b}]}},
        "policy": {"hooks": hooks},
        "archive": {"retention_days": 30},
    }))  # fmt: skip
    return load_config(path)


async def metric(listen: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as resp:
        text = await resp.text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_dlp_hook_denies_marker_tells_sender_archives_hook_and_fails_closed_or_open(
    ngircd: Ircd, dlp: Dlp, tmp_path: Path
) -> None:
    a, b = ngircd.channel("dlpa"), ngircd.channel("dlpb")
    alice, bob = await asyncio.gather(IrcUser.connect(ngircd, "alice"),
                                      IrcUser.connect(ngircd, "bob"))  # fmt: skip
    listen = f"127.0.0.1:{free_port()}"
    hook = {"name": "dlp", "url": dlp.url, "timeout_ms": 1000, "notify_sender": True}
    path = tmp_path / "bridge.yaml"
    config = write_config(path, ngircd, (a, b), [{**hook, "on_error": "deny"}], listen=listen)
    try:
        await asyncio.gather(alice.join(a), bob.join(b))
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            alice.say(a, f"the {MARKER} figures")
            alice.say(a, "lunch at noon?")
            await eventually(lambda: any("lunch at noon?" in t for t in bob.texts(b, "relay")),
                             what="allowed line relayed")  # fmt: skip

            def notices() -> list[str]:
                return [m.text for m in alice.messages(a) if "policy hook 'dlp'" in m.text]

            await eventually(notices, what="notice to the sender")
            assert MARKER not in notices()[0]
            assert not any(MARKER in t for t in bob.texts(b))
            assert {r["version"] for r in dlp.requests} == {2}  # batched by default
            assert {e["origin"]["network"] for e in dlp.events()} == {"irc"}
            assert dlp.events()[0]["destinations"] == [{"network": "irc", "room": b}]

            await dlp.stop()  # the DLP service goes away: fail closed
            relay = daemon.relay
            assert relay is not None
            denied = relay.stats["irc"].denied
            alice.say(a, "said while the DLP is down")
            await eventually(lambda: relay.stats["irc"].denied == denied + 1, what="denied")
            assert await metric(listen, "imbridge_policy_hook_errors_total",
                                hook="dlp", on_error="deny") == 1  # fmt: skip

            # The operator chooses to fail open: reloaded, still down, the line crosses.
            reloaded = [{**hook, "on_error": "allow"}]
            await daemon.reload(write_config(path, ngircd, (a, b), reloaded, listen=listen))
            alice.say(a, "said with on_error allow")
            await eventually(lambda: any("on_error allow" in t for t in bob.texts(b, "relay")),
                             what="relayed although the DLP is down")  # fmt: skip
            assert await metric(listen, "imbridge_policy_hook_errors_total",
                                hook="dlp", on_error="allow") == 1  # fmt: skip
            assert not any("DLP is down" in t for t in bob.texts(b))
    finally:
        await alice.close()
        await bob.close()
    (hit,) = await asyncio.to_thread(search, path, f"{MARKER} figures")
    (decision,) = [o for o in hit["outcomes"] if o["kind"] == "decision"]
    assert (decision["action"], decision["rule"]) == ("deny", "hook:dlp")
    (down,) = await asyncio.to_thread(search, path, "while the DLP is down")
    (decision,) = [o for o in down["outcomes"] if o["kind"] == "decision"]
    assert (decision["action"], decision["rule"]) == ("deny", "hook:dlp")


@pytest.fixture(scope="session")
def example_hook_installed() -> None:
    """The worked example, installed into the test venv as an operator would."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         str(EXAMPLE)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    importlib.invalidate_caches()


@pytest.mark.usefixtures("example_hook_installed")
async def test_entry_point_hook_redacts_what_a_rule_cannot_express(
    ngircd: Ircd, tmp_path: Path
) -> None:
    a, b = ngircd.channel("luhna"), ngircd.channel("luhnb")
    alice, bob = await asyncio.gather(IrcUser.connect(ngircd, "alice"),
                                      IrcUser.connect(ngircd, "bob"))  # fmt: skip
    path = tmp_path / "bridge.yaml"
    hooks = [{"name": "cards", "entry_point": "luhn-cards", "timeout_ms": 500}]
    config = write_config(path, ngircd, (a, b), hooks, listen=f"127.0.0.1:{free_port()}")
    out = io.StringIO()
    code = await asyncio.to_thread(
        policy_test, path, source=f"irc:{a}:alice", to=f"irc:{b}",
        text="pay 4111 1111 1111 1111", out=out, err=out,
    )  # fmt: skip
    assert code == 0, out.getvalue()
    assert "rule:     hook:cards" in out.getvalue()
    assert "redacted: pay [redacted]" in out.getvalue()
    try:
        await asyncio.gather(alice.join(a), bob.join(b))
        async with Daemon(config) as daemon:
            assert await daemon.ready(30)
            alice.say(a, "card 4111 1111 1111 1111, order 1234 5678 9012 3456")
            await eventually(lambda: bob.texts(b, "relay"), what="relayed")
            (line,) = bob.texts(b, "relay")
            assert line.endswith("card [redacted], order 1234 5678 9012 3456")
    finally:
        await alice.close()
        await bob.close()
