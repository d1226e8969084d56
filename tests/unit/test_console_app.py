"""The review console's handlers, role checks and forms, through HTTP as a browser uses
them: what each role may open, what every look leaves in the audit trail, and what the
console refuses."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.unit.console_world import HOSTILE, PASSWORD, World, csrf_of, world

__all__ = ["world"]

PAGES = ["overview", "search", "review", "holds", "integrity", "audit"]


@pytest.mark.parametrize("path", [*PAGES, "event/ev1", "nowhere", ""])
async def test_every_page_sends_an_anonymous_visitor_to_the_login_form(
    world: World, path: str
) -> None:
    resp = await world.client.get(f"/console/{path}", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/console/login")


@pytest.mark.parametrize("path", ["search.json?q=merger", "export?format=jsonl", "file/1"])
async def test_json_and_downloads_answer_401_without_a_session(world: World, path: str) -> None:
    resp = await world.client.get(f"/console/{path}", allow_redirects=False)
    assert resp.status == 401


async def test_security_headers_on_every_answer(world: World) -> None:
    for path in ("/console/login", "/console/search"):
        resp = await world.client.get(path, allow_redirects=False)
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"


async def test_the_session_cookie_is_httponly_and_strict(world: World) -> None:
    page = await world.client.get("/console/login")
    token = csrf_of(await page.text())
    resp = await world.client.post(
        "/console/login",
        data={"username": "reviewer", "password": PASSWORD, "csrf": token},
        allow_redirects=False,
    )
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console/" in cookie
    assert PASSWORD not in cookie


async def test_login_and_the_next_page_keeps_to_the_console(world: World) -> None:
    page = await world.client.get("/console/login")
    token = csrf_of(await page.text())
    resp = await world.client.post(
        "/console/login",
        data={
            "username": "reviewer",
            "password": PASSWORD,
            "csrf": token,
            "next": "//evil.example/",
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/overview"


async def test_login_form_without_its_csrf_token_is_refused(world: World) -> None:
    resp = await world.client.post(
        "/console/login", data={"username": "reviewer", "password": PASSWORD}
    )
    assert resp.status == 403
    assert (await world.client.get("/console/search", allow_redirects=False)).status == 303


async def test_wrong_passwords_lock_the_account_for_a_while(world: World) -> None:
    for _ in range(5):
        assert await world.login("reviewer", "wrong password!") == 401
    # Locked now: even the right password is refused, with the same answer.
    assert await world.login("reviewer") == 401
    assert await world.login("auditor") == 303  # other accounts are not affected


async def test_a_reviewer_searches_with_hits_highlighted_and_the_search_recorded(
    world: World,
) -> None:
    assert await world.login("reviewer") == 303
    resp = await world.client.get("/console/search", params={"q": "MERGER"})
    page = await resp.text()
    assert resp.status == 200
    assert "<mark>merger</mark>" in page
    assert "good morning" not in page
    access = [r for r in world.records("access") if r[0] == "search"]
    assert access
    assert access[-1][1] == "reviewer"
    assert '"via":"console"' in access[-1][2]
    assert '"text":"MERGER"' in access[-1][2]


async def test_search_filters_and_json(world: World) -> None:
    assert await world.login("reviewer") == 303
    resp = await world.client.get(
        "/console/search.json", params={"q": "merger", "user": "alice", "since": "2024-05-02"}
    )
    hits = (await resp.json())["hits"]
    assert sorted(h["event_id"] for h in hits) == sorted(
        [world.ids["denied"], world.ids["flagged"]]
    )
    resp = await world.client.get("/console/search", params={"since": "yesterday"})
    assert resp.status == 400


async def test_hostile_text_is_escaped_in_search_and_conversation(world: World) -> None:
    assert await world.login("reviewer") == 303
    for path in ("/console/search?q=script", f"/console/event/{world.ids['hostile']}"):
        page = await (await world.client.get(path)).text()
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&gt;alert(&#34;x&#34;)&lt;/" in page  # shown, as text


async def test_conversation_shows_context_decisions_flags_and_files(world: World) -> None:
    assert await world.login("reviewer") == 303
    page = await (await world.client.get(f"/console/event/{world.ids['flagged']}")).text()
    assert "good morning desk" in page  # the message before it
    assert "figures attached" in page  # and after it
    assert 'class="mark denied"' in page
    assert 'class="mark flagged"' in page
    assert "insider-words" in page
    views = [r for r in world.records("access") if r[0] == "view"]
    assert world.ids["flagged"] in views[-1][2]


async def test_a_stored_attachment_downloads_checked_against_its_record(world: World) -> None:
    assert await world.login("reviewer") == 303
    page = await (await world.client.get(f"/console/event/{world.ids['file']}")).text()
    seq = page.split("/console/file/")[1].split('"')[0]
    resp = await world.client.get(f"/console/file/{seq}?download=1")
    assert await resp.read() == b"quarterly figures\n"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in resp.headers["Content-Security-Policy"]


async def test_flag_then_review_and_the_queue_empties(world: World) -> None:
    assert await world.login("reviewer") == 303
    token = await world.csrf()
    resp = await world.client.post(
        f"/console/flag/{world.ids['plain']}", data={"csrf": token}, allow_redirects=False
    )
    assert resp.status == 303
    queue = await (await world.client.get("/console/review")).text()
    assert "manual (reviewer)" in queue
    assert "insider-words" in queue
    for key in ("plain", "flagged"):
        resp = await world.client.post(
            f"/console/review/{world.ids[key]}",
            data={"csrf": token, "verdict": "false_positive", "comment": "fine"},
            allow_redirects=False,
        )
        assert resp.status == 303
    queue = await (await world.client.get("/console/review")).text()
    assert "Nothing waits for review" in queue
    reviews = world.records("review")
    assert [r[0] for r in reviews] == ["false_positive", "false_positive"]
    assert {r[1] for r in reviews} == {"reviewer"}
    assert any(r[0] == "review" for r in world.records("access"))


async def test_review_needs_a_known_verdict_and_a_flagged_message(world: World) -> None:
    assert await world.login("reviewer") == 303
    token = await world.csrf()
    bad = await world.client.post(
        f"/console/review/{world.ids['flagged']}", data={"csrf": token, "verdict": "shrug"}
    )
    assert bad.status == 400
    unflagged = await world.client.post(
        f"/console/review/{world.ids['plain']}", data={"csrf": token, "verdict": "reviewed"}
    )
    assert unflagged.status == 400


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("reviewer", {"overview", "search", "review"}),
        ("auditor", {"overview", "search", "review", "integrity", "audit"}),
        ("admin", set(PAGES)),
    ],
)
async def test_each_role_opens_only_its_pages(world: World, role: str, allowed: set[str]) -> None:
    assert await world.login(role) == 303
    for page in PAGES:
        resp = await world.client.get(f"/console/{page}", allow_redirects=False)
        assert resp.status == (200 if page in allowed else 403), page
    export = await world.client.get("/console/export?format=jsonl", allow_redirects=False)
    assert export.status == (403 if role == "reviewer" else 200)


async def test_an_admin_places_and_lifts_a_hold_each_a_chained_record(world: World) -> None:
    assert await world.login("admin") == 303
    token = await world.csrf("/console/holds")
    resp = await world.client.post(
        "/console/holds",
        data={"csrf": token, "name": "case-7", "room": "#desk", "reason": "matter 7"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await (await world.client.get("/console/holds")).text()
    assert "case-7" in page
    assert "matter 7" in page
    again = await world.client.post(
        "/console/holds", data={"csrf": token, "name": "case-7", "reason": "again"}
    )
    assert again.status == 400
    resp = await world.client.post(
        "/console/holds/lift",
        data={"csrf": token, "name": "case-7", "reason": "matter closed"},
        allow_redirects=False,
    )
    assert resp.status == 303
    holds = world.records("hold")
    assert [h[0] for h in holds] == ["placed", "lifted"]
    assert all(json.loads(h[2])["source"] == "console" for h in holds)
    assert json.loads(holds[0][2])["globs"] == {"network": "*", "room": "#desk", "user": "*"}


async def test_an_auditor_verifies_and_sees_it_on_the_integrity_page(world: World) -> None:
    assert await world.login("auditor") == 303
    token = await world.csrf("/console/integrity")
    resp = await world.client.post(
        "/console/integrity/verify", data={"csrf": token}, allow_redirects=False
    )
    assert resp.status == 303
    page = await (await world.client.get(resp.headers["Location"])).text()
    assert "Verification just run: intact" in page
    assert "by auditor: intact" in page


async def test_the_audit_log_lists_console_actions(world: World) -> None:
    assert await world.login("reviewer") == 303
    await world.client.get("/console/search", params={"q": "merger"})
    await world.client.post("/console/logout", data={"csrf": await world.csrf()})
    assert await world.login("auditor") == 303
    page = await (await world.client.get("/console/audit")).text()
    assert "search" in page
    assert "text=&#39;merger&#39;" in page
    assert "reviewer via console" in page


@pytest.mark.parametrize("fmt", ["jsonl", "eml", "zip"])
async def test_an_auditor_exports_a_search_result(world: World, fmt: str) -> None:
    assert await world.login("auditor") == 303
    resp = await world.client.get("/console/export", params={"format": fmt, "q": "merger"})
    assert resp.status == 200
    data = await resp.read()
    if fmt == "jsonl":
        lines = [json.loads(line) for line in data.decode().splitlines()]
        assert sorted(x["event"]["id"] for x in lines) == sorted(
            [world.ids["flagged"], world.ids["denied"]]
        )
    else:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        assert (
            len([n for n in names if n.endswith(".eml")]) == 2
            if fmt == "eml"
            else "export.jsonl" in names
        )
    exports = [r for r in world.records("access") if r[0] == "export"]
    assert f'"format":"{fmt}"' in exports[-1][2]


async def test_overview_draws_its_charts_inline(world: World) -> None:
    assert await world.login("reviewer") == 303
    page = await (await world.client.get("/console/overview")).text()
    assert page.count("<svg") == 4
    assert "Open review items by age" in page


async def test_a_changed_password_ends_the_session(world: World) -> None:
    assert await world.login("reviewer") == 303
    assert (await world.client.get("/console/search", allow_redirects=False)).status == 200
    world.console.users.passwd("reviewer", "another password 2")
    assert (await world.client.get("/console/search", allow_redirects=False)).status == 303


def test_hostile_sample_is_in_the_world() -> None:
    assert "<script>" in HOSTILE


async def test_one_address_hammering_the_console_gets_429_with_retry_after(world: World) -> None:
    """The console takes the same per-client limits as /media/: a script cannot starve
    the other reviewers, or the relay's event loop, with requests."""
    limits = world.config.console.limits
    statuses: list[int] = []
    retry_after: list[str] = []
    for _ in range(limits.burst + 2 * int(limits.rate) + 20):
        resp = await world.client.get("/console/login", allow_redirects=False)
        statuses.append(resp.status)
        if resp.status == 429:
            retry_after.append(resp.headers["Retry-After"])
    assert statuses[0] == 200
    assert 429 in statuses, statuses
    assert retry_after
    assert all(int(r) >= 1 for r in retry_after)
