"""What a reviewer does (POST forms): sign in and out, flag, review, place and lift holds,
verify. The guard has checked the session, the role and the CSRF token before any of
these runs; each action is a chained record written before the answer is sent, and
answers with 303 to the page that shows its result (so a reload never repeats it)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from aiohttp import web

from imbridge.archive.audit import record_access
from imbridge.archive.chain import Problem
from imbridge.config.schema import LegalHold
from imbridge.console import auth, holds, review
from imbridge.console.app import (
    CONSOLE,
    SESSION,
    allow,
    render,
    root_of,
    set_session,
    signed_in,
    url,
)
from imbridge.console.users import Role, User
from imbridge.db import Conn
from imbridge.dialect import streamed


def _user(request: web.Request) -> User:
    return signed_in(request)


def _field(form: object, name: str, limit: int = 2000) -> str:
    value = form.get(name) if hasattr(form, "get") else None  # a MultiDictProxy
    return value.strip()[:limit] if isinstance(value, str) else ""


def _safe_next(request: web.Request, target: str) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    parts = urlsplit(target)
    root = root_of(request)
    if parts.scheme or parts.netloc or not target.startswith(root) or target.startswith("//"):
        return url(request, "overview")
    return target


@allow(None)
async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    name = _field(form, "username", 64)
    password = _field(form, "password", 1024)
    target = _field(form, "next", 2000)
    now = console.clock()
    now_us = int(now * 1_000_000)
    cfg = console.config.console
    address = request.remote or "?"

    def refused(message: str, status: int) -> web.Response:
        return render(
            request, "login.html", status=status, title="Sign in", error=message, next=target
        )

    if not console.limiter.allow(address, time.monotonic()):
        return refused("Too many attempts from your address: wait a minute and try again.", 429)
    is_locked = await console.db.read(lambda conn: auth.locked(conn, name, now_us))
    user = None if is_locked else await asyncio.to_thread(console.users.verify, name, password)
    if user is None:
        if not is_locked:

            def count(conn: Conn) -> bool:
                return auth.failed(
                    conn,
                    name,
                    now_us,
                    attempts=cfg.login_attempts,
                    lockout_us=cfg.lockout_minutes * 60_000_000,
                )

            await console.db.transact(count)
        return refused("Wrong user name or password, or the account is locked for a while.", 401)
    await console.db.transact(lambda conn: auth.succeeded(conn, name))
    await console.accessed(user, "login", {"address": address}, None)
    response = web.Response(
        status=303, headers={"Location": _safe_next(request, target or url(request, "overview"))}
    )
    set_session(request, response, request[SESSION].signed_in(user.name, user.stamp, now))
    return response


@allow(None)
async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    response = web.Response(status=303, headers={"Location": url(request, "login")})
    set_session(request, response, request[SESSION].fresh(console.clock()))
    return response


@allow(Role.REVIEWER)
async def flag_post(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    event_id = request.match_info["event_id"]
    actor = console.actor(_user(request))

    def write(conn: Conn) -> int:
        seq = review.flag(conn, console.store, actor, event_id)
        record_access(conn, console.store, actor, "flag", query={"event_id": event_id}, results=1)
        return seq

    try:
        await console.db.transact(write, background=True)
    except review.ReviewError as exc:
        return render(request, "error.html", status=404, title="Cannot flag", message=str(exc))
    await console.db.read(console.store.checkpoint, background=True)
    raise web.HTTPSeeOther(url(request, "conversation", event_id=event_id))


@allow(Role.REVIEWER)
async def review_post(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    event_id = request.match_info["event_id"]
    form = await request.post()
    verdict = _field(form, "verdict", 32)
    comment = _field(form, "comment", 4000)
    actor = console.actor(_user(request))

    def write(conn: Conn) -> int:
        seq = review.review(conn, console.store, actor, event_id, verdict=verdict, comment=comment)
        query = {"event_id": event_id, "verdict": verdict}
        record_access(conn, console.store, actor, "review", query=query, results=1)
        return seq

    try:
        await console.db.transact(write, background=True)
    except review.ReviewError as exc:
        return render(request, "error.html", status=400, title="Cannot review", message=str(exc))
    await console.db.read(console.store.checkpoint, background=True)
    raise web.HTTPSeeOther(url(request, "review"))


@allow(Role.ADMIN)
async def place_hold(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    values = {k: _field(form, k, 500) for k in ("name", "network", "room", "user", "reason")}
    actor = console.actor(_user(request))
    try:
        hold = LegalHold(
            name=values["name"],
            network=values["network"] or "*",
            room=values["room"] or "*",
            user=values["user"] or "*",
        )
    except ValueError:
        return await _holds_error(request, "give the hold a name", values)
    try:
        await console.db.transact(
            lambda conn: holds.place(conn, console.store, actor, hold, values["reason"]),
            background=True,
        )
    except holds.HoldError as exc:
        return await _holds_error(request, str(exc), values)
    await console.db.read(console.store.checkpoint, background=True)
    raise web.HTTPSeeOther(url(request, "holds"))


@allow(Role.ADMIN)
async def lift_hold(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    name, reason = _field(form, "name", 500), _field(form, "reason", 500)
    actor = console.actor(_user(request))
    try:
        await console.db.transact(
            lambda conn: holds.lift(conn, console.store, actor, name, reason), background=True
        )
    except holds.HoldError as exc:
        return await _holds_error(request, str(exc), {})
    await console.db.read(console.store.checkpoint, background=True)
    raise web.HTTPSeeOther(url(request, "holds"))


async def _holds_error(request: web.Request, message: str, values: dict[str, str]) -> web.Response:
    console = request.app[CONSOLE]
    configured = console.store.settings.legal_hold
    found = await console.db.read(lambda conn: holds.listed(conn, configured))
    return render(
        request,
        "holds.html",
        status=400,
        title="Legal holds",
        holds=found,
        error=message,
        values=values,
    )


@allow(Role.AUDITOR)
async def verify(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]

    def walk(conn: Conn) -> tuple[Problem | None, int]:
        with streamed(conn) as rows:
            return console.store.verify(rows)

    problem, count = await console.db.read(walk, background=True)
    await console.accessed(_user(request), "verify", {"intact": problem is None}, count)
    result = "intact" if problem is None else f"TAMPERED: {problem}"
    raise web.HTTPSeeOther(url(request, "integrity", {"result": result}))
