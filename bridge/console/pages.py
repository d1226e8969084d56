"""The pages a reviewer reads (GET): each looks, then records the look, then shows it.
A page whose `access` record cannot be written is not shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from imbridge.archive.audit import Entry, entries
from imbridge.archive.search import Hit, Query, search
from imbridge.commands.archive import filters_of, parse_when
from imbridge.console import charts, conversation, holds, overview, review
from imbridge.console.app import CONSOLE, USER, allow, render, signed_in, url
from imbridge.console.highlight import highlight
from imbridge.console.users import Role, User
from imbridge.db import Conn

PAGE_SIZE = 50
MAX_PAGE = 200
AUDIT_PAGE = 200


def _user(request: web.Request) -> User:
    return signed_in(request)


@allow(None)
async def home(request: web.Request) -> web.StreamResponse:
    target = "overview" if request.get(USER) else "login"
    raise web.HTTPSeeOther(url(request, target))


@allow(None)
async def login_form(request: web.Request) -> web.StreamResponse:
    return render(
        request, "login.html", title="Sign in", error=None, next=request.query.get("next", "")
    )


@dataclass(frozen=True, slots=True)
class SearchForm:
    query: Query
    page: int
    values: dict[str, str]


def search_form(params: Any, limit: int | None = None) -> SearchForm:
    """The search parameters of a request; ValueError says what is wrong with one."""
    values = {
        k: str(params.get(k, "")).strip()
        for k in ("q", "network", "room", "user", "since", "until")
    }
    try:
        page = min(max(int(params.get("page", "1")), 1), MAX_PAGE)
    except ValueError:
        raise ValueError("page must be a number") from None
    query = Query(
        text=values["q"],
        network=values["network"] or None,
        room=values["room"] or None,
        user=values["user"] or None,
        since=parse_when(values["since"] or None, "since"),
        until=parse_when(values["until"] or None, "until"),
        limit=limit if limit is not None else page * PAGE_SIZE + 1,
    )
    return SearchForm(query, page, values)


async def run_search(request: web.Request, form: SearchForm) -> list[Hit]:
    console = request.app[CONSOLE]
    await console.db.transact(console.store.index_pending, background=True)
    hits = await console.db.read(
        lambda conn: search(conn, console.store, form.query), background=True
    )
    shown = hits[(form.page - 1) * PAGE_SIZE : form.page * PAGE_SIZE]
    query = {**filters_of(form.query), "page": form.page}
    await console.accessed(_user(request), "search", query, len(shown))
    return hits


@allow(Role.REVIEWER)
async def search_page(request: web.Request) -> web.StreamResponse:
    try:
        form = search_form(request.query)
    except ValueError as exc:
        return render(
            request,
            "search.html",
            status=400,
            title="Search",
            error=str(exc),
            form=None,
            hits=[],
            more=False,
            highlight=highlight,
            export=None,
        )
    hits = await run_search(request, form)
    shown = hits[(form.page - 1) * PAGE_SIZE : form.page * PAGE_SIZE]
    more = len(hits) > form.page * PAGE_SIZE
    keep = {k: v for k, v in form.values.items() if v}
    return render(
        request,
        "search.html",
        title="Search",
        error=None,
        form=form,
        hits=shown,
        more=more,
        highlight=highlight,
        previous=url(request, "search", {**keep, "page": str(form.page - 1)})
        if form.page > 1
        else None,
        next=url(request, "search", {**keep, "page": str(form.page + 1)}) if more else None,
        export={
            fmt: url(request, "export", {**keep, "format": fmt}) for fmt in ("jsonl", "eml", "zip")
        },
    )


@allow(Role.REVIEWER, api=True)
async def search_json(request: web.Request) -> web.StreamResponse:
    try:
        form = search_form(request.query)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    hits = await run_search(request, form)
    shown = hits[(form.page - 1) * PAGE_SIZE : form.page * PAGE_SIZE]
    return web.json_response(
        {"hits": [h.as_json() for h in shown], "more": len(hits) > form.page * PAGE_SIZE}
    )


@allow(Role.REVIEWER)
async def conversation_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    event_id = request.match_info["event_id"]
    found = await console.db.read(
        lambda conn: conversation.around(conn, console.store, event_id), background=True
    )
    await console.accessed(
        _user(request),
        "view",
        {"page": "conversation", "event_id": event_id},
        len(found.entries) if found else 0,
    )
    if found is None:
        return render(
            request,
            "error.html",
            status=404,
            title="Not found",
            message="No such message in the archive (purged, or never recorded).",
        )
    return render(
        request,
        "conversation.html",
        title=f"{found.room} on {found.network}",
        conv=found,
        highlight=highlight,
        q=request.query.get("q", ""),
    )


@allow(Role.REVIEWER)
async def review_queue(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    show = request.query.get("show", "open")
    items = await console.db.read(lambda conn: review.queue(conn, console.store), background=True)
    if show == "open":
        items = [i for i in items if i.open]
    items.sort(key=lambda i: i.flagged)
    await console.accessed(_user(request), "view", {"page": "review", "show": show}, len(items))
    return render(
        request,
        "review.html",
        title="Review queue",
        items=items,
        show=show,
        verdicts=review.VERDICTS,
    )


@allow(Role.ADMIN)
async def holds_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    configured = console.store.settings.legal_hold
    found = await console.db.read(lambda conn: holds.listed(conn, configured))
    await console.accessed(_user(request), "view", {"page": "holds"}, len(found))
    return render(request, "holds.html", title="Legal holds", holds=found, error=None, values={})


@allow(Role.AUDITOR)
async def integrity(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    store = console.store

    def facts(conn: Conn) -> dict[str, Any]:
        row = conn.execute(
            "SELECT seq, ts_us FROM archive_records WHERE kind = 'access' AND action = 'verify' "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        last = None
        if row is not None:
            found = entries(conn, store, since_us=int(row[1]), kinds=("access",))
            last = next((e for e in found if e.seq == int(row[0])), None)
        return {"tail": store.tail(conn), "last": last}

    found = await console.db.read(facts, background=True)
    heads = await console.db.read(lambda _conn: store.read_heads(), background=True)
    signer = store.signer()
    head_line = None
    if heads is not None and heads.lines:
        import json  # noqa: PLC0415 - only here

        head_line = json.loads(heads.lines[-1])
    await console.accessed(_user(request), "view", {"page": "integrity"}, None)
    return render(
        request,
        "integrity.html",
        title="Integrity",
        tail=found["tail"],
        last=found["last"],
        head=head_line,
        key_id=signer.key_id if signer else None,
        head_file=str(store.head_file),
        result=request.query.get("result"),
    )


@allow(Role.AUDITOR)
async def audit_log(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    kind = request.query.get("kind") or None
    kinds = (kind,) if kind in ("access", "config", "hold") else ("access", "config", "hold")

    def newest(conn: Conn) -> list[Entry]:
        return list(entries(conn, console.store, kinds=kinds))[-AUDIT_PAGE:][::-1]

    await console.accessed(_user(request), "audit", {"page": "audit", "kind": kind}, None)
    found = await console.db.read(newest, background=True)
    return render(request, "audit.html", title="Audit log", entries=found, kind=kind or "")


@allow(Role.REVIEWER)
async def overview_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    now = datetime.fromtimestamp(console.clock(), UTC)
    days = 30

    def counts(conn: Conn) -> dict[str, Any]:
        items = review.queue(conn, console.store)
        return {
            "networks": overview.per_day(conn, now, days, "network", ("event",)),
            "rooms": overview.per_day(conn, now, days, "room", ("event",)),
            "decisions": overview.decisions_per_day(conn, now, days),
            "ages": overview.queue_ages(items, now),
            "open": sum(1 for i in items if i.open),
        }

    found = await console.db.read(counts, background=True)
    await console.accessed(_user(request), "view", {"page": "overview"}, None)
    figures = {
        name: charts.stacked_bars(title, found[name].columns, found[name].series)
        for name, title in (
            ("networks", "Messages per day by network"),
            ("rooms", "Messages per day by room"),
            ("decisions", "Denied, redacted and flagged per day"),
            ("ages", "Open review items by age"),
        )
    }
    return render(
        request, "overview.html", title="Overview", charts=figures, open=found["open"], days=days
    )
