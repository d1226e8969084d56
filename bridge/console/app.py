"""The console's aiohttp sub-application: its state, the guard every request passes, and
the routes.

The guard is the one place that decides who may see what, so no handler can forget it:
every path but the login form and the static files needs a valid session (a page request
without one gets 303 to the login form, a JSON or download request 401); every POST
carries the session's CSRF token; each route names the least role that may use it.
Every response carries a strict Content-Security-Policy (`default-src 'self'`: no inline
script runs, whatever a message holds), `X-Frame-Options: DENY` and `no-store`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from imbridge.archive.actor import Actor
from imbridge.archive.audit import log_access
from imbridge.archive.files import FileStore
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.schema import Config
from imbridge.console.auth import AddressLimiter
from imbridge.console.migrations import CONSOLE_MIGRATIONS
from imbridge.console.sessions import COOKIE, Session, SessionCodec, load_key
from imbridge.console.users import Role, User, UserStore
from imbridge.db import Database, location
from imbridge.httplimits import ClientLimiter, Handler, proxies

HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def open_database(config: Config) -> Database:
    """A connection of the console's own: its searches never wait behind, nor hold up,
    the relay's commits in the daemon's queue."""
    return Database(
        location(config.bridge),
        {"archive": ARCHIVE_MIGRATIONS, "console": CONSOLE_MIGRATIONS},
    )


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a route: the least role, and how an anonymous request is answered."""

    role: Role | None
    """None: open to anyone (the login form, static files)."""
    api: bool = False
    """Answer 401 rather than a redirect (JSON and downloads)."""


class Console:
    """Everything the handlers share, owned by the sub-application."""

    def __init__(
        self,
        config: Config,
        db: Database,
        store: ArchiveStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        state = config.bridge.state_dir
        self.config = config
        self.db = db
        self.store = store
        self.clock = clock
        self.users = UserStore(state)
        self.codec = SessionCodec(load_key(state), config.console.session_idle_minutes * 60.0)
        self.limiter = AddressLimiter()
        self.files = FileStore.for_archive(config.archive, state)
        public = config.console.public_url
        self.secure = public is not None and urlsplit(public).scheme == "https"
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value escaped unless marked safe by this code
            undefined=jinja2.StrictUndefined,
        )

    def actor(self, user: User) -> Actor:
        return Actor(user=user.name, via="console")

    async def accessed(
        self, user: User, action: str, query: Mapping[str, Any], results: int | None
    ) -> None:
        """The `access` record of one look; nothing is shown unless it was written."""
        await log_access(
            self.db, self.store, self.actor(user), action, query=query, results=results
        )


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("session", Session)
USER: web.RequestKey[User | None] = web.RequestKey("user")


def signed_in(request: web.Request) -> User:
    """The signed-in user of a request the guard let through to a role-checked handler."""
    user = request[USER]
    if user is None:  # pragma: no cover - the guard answers before such a handler runs
        raise web.HTTPUnauthorized()
    return user


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    console = request.app[CONSOLE]
    session: Session = request[SESSION]
    user = request.get(USER)
    page = console.templates.get_template(name).render(
        user=user,
        role=user.role if user else None,
        Role=Role,
        csrf=console.codec.csrf(session),
        root=root_of(request),
        **context,
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def root_of(request: web.Request) -> str:
    """Where the console is mounted, `/console/`."""
    return str(request.app.router["home"].url_for())


def url(
    request: web.Request, route: str, query: Mapping[str, str] | None = None, **parts: str
) -> str:
    u = request.app.router[route].url_for(**parts)
    return str(u.with_query(query) if query else u)


def _wants_api(request: web.Request, access: Access | None) -> bool:
    accept = request.headers.get("Accept", "")
    return (access is not None and access.api) or (
        "application/json" in accept and "text/html" not in accept
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    console = request.app[CONSOLE]
    now = console.clock()
    session = console.codec.decode(request.cookies.get(COOKIE), now)
    user = None
    if session is not None and session.user is not None:
        found = console.users.get(session.user)
        if found is not None and found.stamp == session.stamp:
            user = found
        else:  # deleted, or the password changed since: signed out
            session = None
    request[SESSION] = session or Session.fresh(now)
    request[USER] = user
    route = request.match_info.route
    access: Access | None = getattr(route.handler, "access", None) if route else None
    if access is None or access.role is not None:
        if user is None:
            response = _anonymous(request, access)
            _keep(request, response, now)
            return response
        if access is not None and access.role is not None and user.role < access.role:
            response = render(
                request,
                "error.html",
                status=403,
                title="Not allowed",
                message=f"This page needs the {access.role.label} role; you are a "
                f"{user.role.label}.",
            )
            _keep(request, response, now)
            return response
    if request.method == "POST":
        form = await request.post()
        token = form.get("csrf")
        if not console.codec.csrf_ok(request[SESSION], token if isinstance(token, str) else None):
            response = render(
                request,
                "error.html",
                status=403,
                title="Form expired",
                message="The form was too old or not sent from this console: open it again.",
            )
            _keep(request, response, now)
            return response
    response = await handler(request)
    _keep(request, response, now)
    return response


def _anonymous(request: web.Request, access: Access | None) -> web.StreamResponse:
    if _wants_api(request, access):
        return web.json_response({"error": "sign in first"}, status=401)
    login = request.app.router["login"].url_for()
    target = request.path_qs if request.method == "GET" else ""
    location = str(login) + (f"?next={quote(target, safe='')}" if target else "")
    return web.Response(status=303, headers={"Location": location})


def _keep(request: web.Request, response: web.StreamResponse, now: float) -> None:
    """Re-signs the session cookie (the idle clock starts again) unless the response
    already set one (login, logout)."""
    if COOKIE in response.cookies:
        return
    session: Session = request[SESSION]
    set_session(request, response, session.touched(now))


def set_session(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    console = request.app[CONSOLE]
    response.set_cookie(
        COOKIE,
        console.codec.encode(session),
        path=root_of(request),
        httponly=True,
        samesite="Strict",
        secure=console.secure,
        max_age=int(console.codec.idle),
    )


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def allow(role: Role | None, *, api: bool = False) -> Callable[[Handler], Handler]:
    """Marks a handler with who may use it (read by `guard`)."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, "access", Access(role, api))  # noqa: B010 - a function attribute
        return handler

    return mark


def build_app(console: Console) -> web.Application:
    """The console as an application to mount at `/console/` (`add_subapp`)."""
    from imbridge.console import actions, downloads, pages  # noqa: PLC0415 - they import this

    limits = console.config.console.limits
    limiter = ClientLimiter(
        rate=limits.rate,
        burst=limits.burst,
        concurrent=limits.concurrent,
        trusted_proxies=proxies(console.config.bridge.http.trusted_proxies),
    )

    @web.middleware
    async def per_client(request: web.Request, handler: Handler) -> web.StreamResponse:
        """The same per-client limits as `/media/`: one address cannot starve the others
        (or the relay's loop) with searches and exports."""
        return await limiter.limited(handler)(request)

    app = web.Application(middlewares=[per_client, guard], client_max_size=64 * 1024)
    app[CONSOLE] = console
    app.on_response_prepare.append(_headers)
    r = app.router
    r.add_get("/", pages.home, name="home")
    r.add_get("/login", pages.login_form, name="login")
    r.add_post("/login", actions.login, name="login_post")
    r.add_post("/logout", actions.logout, name="logout")
    r.add_get("/overview", pages.overview_page, name="overview")
    r.add_get("/search", pages.search_page, name="search")
    r.add_get("/search.json", pages.search_json, name="search_json")
    r.add_get("/event/{event_id}", pages.conversation_page, name="conversation")
    r.add_get("/file/{seq:[0-9]+}", downloads.attachment, name="file")
    r.add_get("/export", downloads.export, name="export")
    r.add_post("/flag/{event_id}", actions.flag_post, name="flag")
    r.add_get("/review", pages.review_queue, name="review")
    r.add_post("/review/{event_id}", actions.review_post, name="review_post")
    r.add_get("/holds", pages.holds_page, name="holds")
    r.add_post("/holds", actions.place_hold, name="holds_post")
    r.add_post("/holds/lift", actions.lift_hold, name="holds_lift")
    r.add_get("/integrity", pages.integrity, name="integrity")
    r.add_post("/integrity/verify", actions.verify, name="verify")
    r.add_get("/audit", pages.audit_log, name="audit")
    r.add_get("/static/{name}", downloads.static, name="static")
    return app
