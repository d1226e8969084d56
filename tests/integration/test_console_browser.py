"""The review console in a real browser (Debian's chromium, driven by playwright) over what
the daemon relayed between two channels of a real ngircd: a compliance officer signs in,
finds a token that crossed, reads it in context, flags and reviews, places a hold that
the running daemon's purge sees at once, verifies the chain, and finds every one of those
actions in the audit log; hostile text stays text; a reviewer cannot open the audit log
or export. A screenshot of each page is written to the test's temporary folder."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from playwright.async_api import Browser, Page, async_playwright

from imbridge.archive.retention import placed_holds
from imbridge.config.load import parse_config
from imbridge.console.users import Role, UserStore
from imbridge.daemon import Daemon
from tests.servers.ircd import Ircd, IrcUser, eventually
from tests.servers.process import free_port

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "a long test password"
HOSTILE = '<script>alert("xss")</script><img src=x onerror="alert(1)"> hostile-sample'


async def sign_in(browser: Browser, base: str, name: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    page.set_default_timeout(15_000)
    await page.goto(f"{base}/console/search")  # not signed in: sent to the login form
    assert "/console/login" in page.url
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/search*")
    return page, dialogs


async def inert(page: Page, dialogs: list[str]) -> None:
    """No script of the message's in the DOM, no image it smuggled, no dialog opened."""
    scripts = await page.evaluate(
        "[...document.scripts].filter(s => !s.src.endsWith('/console/static/console.js')).length"
    )
    assert scripts == 0
    assert await page.evaluate("document.images.length") == 0
    assert dialogs == []


async def test_a_reviewer_finds_reads_flags_reviews_holds_and_every_look_is_audited(
    ngircd: Ircd, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    a, b = ngircd.channel("con"), ngircd.channel("sole")
    state = tmp_path / "state"
    config = parse_config(json.dumps({
        "bridge": {"state_dir": str(state), "log": {"level": "warning", "format": "console"},
                   "http": {"listen": f"127.0.0.1:{port}"}},
        "networks": {"irc": ngircd.network()},
        "gateways": {"g": {"rooms": [{"network": "irc", "room": a},
                                     {"network": "irc", "room": b}]}},
        "policy": {"lexicons": {"insider": {"words": ["inside information"]}},
                   "rules": [{"name": "insider-words", "action": "flag",
                              "lexicons": ["insider"]}]},
        "archive": {"log_checkpoints": False},
        "console": {"enabled": True},
    }))  # fmt: skip
    users = UserStore(state, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("olivia", Role.ADMIN, PASSWORD)
    users.add("rita", Role.REVIEWER, PASSWORD)
    token = f"tok{secrets.token_hex(5)}"
    shots = tmp_path / "screenshots"
    shots.mkdir()

    alice, bob = await asyncio.gather(
        IrcUser.connect(ngircd, "alice"), IrcUser.connect(ngircd, "bob")
    )
    await asyncio.gather(alice.join(a), bob.join(b))
    try:
        async with Daemon(config) as daemon, async_playwright() as pw:
            assert await daemon.ready(30)
            alice.say(a, "good morning")
            alice.say(a, f"{token}: I have inside information on the merger")
            alice.say(a, HOSTILE)
            await eventually(lambda: len(bob.messages(b, "relay")) >= 3, 20, "relayed to bob")

            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page, dialogs = await sign_in(browser, base, "olivia")

            await page.goto(f"{base}/console/search?q={token}")
            row = page.locator("table.hits tbody tr", has_text=token)
            await row.wait_for()
            assert await row.locator("mark").inner_text() == token
            await page.screenshot(path=shots / "search.png", full_page=True)

            await row.locator("a").first.click()
            await page.wait_for_url("**/console/event/**")
            focus = page.locator("li.entry.focus")
            assert token in await focus.inner_text()
            assert await focus.locator(".mark.flagged").count() == 1  # the lexicon flagged it
            assert "good morning" in await page.inner_text("ol.conversation")
            await inert(page, dialogs)
            await page.screenshot(path=shots / "conversation.png", full_page=True)

            # The hostile message, opened and flagged by hand: still only text.
            await page.goto(f"{base}/console/search?q=hostile-sample")
            await page.locator("table.hits tbody tr a").first.click()
            await page.wait_for_url("**/console/event/**")
            hostile = page.locator("li.entry.focus")
            assert '<script>alert("xss")</script>' in await hostile.locator(".text").inner_text()
            await hostile.locator("button.flag").click()
            await page.wait_for_url("**/console/event/**")
            assert await page.locator("li.entry.focus .mark.flagged").count() == 1
            await inert(page, dialogs)

            await page.goto(f"{base}/console/review")
            item = page.locator("table.queue tbody tr", has_text="insider-words")
            await item.locator("select[name=verdict]").select_option("escalated")
            await item.locator("input[name=comment]").fill("ask the desk head")
            await item.locator("button[type=submit]").click()
            await page.wait_for_url("**/console/review")
            escalated = page.locator("table.queue tbody tr", has_text="insider-words")
            assert "escalated by olivia" in await escalated.inner_text()
            await inert(page, dialogs)
            await page.screenshot(path=shots / "review.png", full_page=True)

            await page.goto(f"{base}/console/holds")
            await page.fill("input[name=name]", "case-e2e")
            await page.fill("form.filters input[name=room]", a)
            await page.fill("form.filters input[name=reason]", "matter 2024-17")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**/console/holds")
            assert "matter 2024-17" in await page.inner_text("table.holds")
            held = await daemon.db.read(placed_holds)  # what the running daemon's purge reads
            assert [(h.name, h.room) for h in held] == [("case-e2e", a)]
            await page.screenshot(path=shots / "holds.png", full_page=True)

            await page.goto(f"{base}/console/integrity")
            await page.click("text=Verify the whole chain now")
            await page.wait_for_url("**/console/integrity?**")
            assert "Verification just run: intact" in await page.inner_text("main")
            await page.screenshot(path=shots / "integrity.png", full_page=True)

            await page.goto(f"{base}/console/overview")
            assert await page.locator("svg.chart").count() == 4
            await page.screenshot(path=shots / "overview.png", full_page=True)

            await page.goto(f"{base}/console/audit")
            log = await page.inner_text("table.audit")
            for needle in (f"text='{token}'", "event_id=", "verdict='escalated'",
                           "case-e2e", "intact=True", "flag"):  # fmt: skip
                assert needle in log, needle
            assert "olivia via console" in log
            await page.screenshot(path=shots / "audit.png", full_page=True)

            reviewer, _ = await sign_in(browser, base, "rita")
            denied = await reviewer.goto(f"{base}/console/audit")
            assert denied is not None
            assert denied.status == 403
            assert "needs the auditor role" in await reviewer.inner_text("main")
            export = await reviewer.goto(f"{base}/console/export?format=jsonl&q={token}")
            assert export is not None
            assert export.status == 403
            await browser.close()
    finally:
        await alice.close()
        await bob.close()
