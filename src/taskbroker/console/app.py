"""The console's Starlette app (mounted at ``/ui``): routes, sign-in, security headers.

Pages are Jinja2 templates rendered on the server; ``static/console.js`` adds live updates
(server-sent events) and nothing else is needed in the browser.  Every page and action calls
:class:`~taskbroker.core.pipeline.service.TaskService` as the signed-in principal, in a worker
thread (the service blocks on the database and the broker).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import anyio
from limits import parse as parse_limit
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from mcp.server.auth.provider import TokenVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from taskbroker.console import pages
from taskbroker.console.auth import COOKIE, PREFIX, OneTimeCodes, Session, SessionCodec
from taskbroker.core.pipeline.errors import (
    BrokerUnavailable,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TaskNotFound,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.waiting import TaskWatcher, WaitSlots

__all__ = ["Console", "ConsoleOptions", "create_console_app"]

log = logging.getLogger("taskbroker.console")

HERE = Path(__file__).resolve().parent

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleOptions:
    """What the console needs besides the service.

    Attributes:
        secret: the session signing key (random per process when not configured).
        trace_url: a link template for trace ids (``{trace_id}`` is replaced), or None.
        heartbeat_seconds: workers' heartbeat interval (a worker unseen for three is lost).
        beat: a callable returning the periodic schedule's entries (name, task type,
            schedule text, params, schedule object), or None when no beat entries exist.
        beat_user: the user beat starts tasks as (their last run is looked up by it).
        local_principal: with authentication off, everybody is this principal.
        secure_cookies: mark cookies ``Secure`` even when the request arrived over plain
            HTTP (TLS ends at a proxy in front: ``TASKBROKER_PUBLIC_URL`` is https).
        slots: the per-user cap of open waits; each live-update stream holds one (shared
            with the MCP server's waiting calls by ``serve``).
    """

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    trace_url: str | None = None
    heartbeat_seconds: float = 5.0
    beat: Callable[[], list[Any]] | None = None
    beat_user: str = "beat"
    local_principal: Principal | None = None
    secure_cookies: bool = False
    slots: WaitSlots = field(default_factory=lambda: WaitSlots(100))


class Console:
    """The console's state: the service, the verifier, sessions, codes and templates."""

    def __init__(self, service: TaskService, *, verifier: TokenVerifier | None,
                 watcher: TaskWatcher, options: ConsoleOptions) -> None:
        self.service = service
        self.verifier = verifier
        self.watcher = watcher
        self.options = options
        self.codec = SessionCodec(options.secret)
        self.codes = OneTimeCodes()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["ago"] = _ago
        self.templates.env.filters["seconds"] = _seconds
        self.templates.env.filters["pretty"] = _pretty
        # sign-in attempts per client address (a token is long and random; this stops floods)
        self._login_limit = parse_limit("10/minute")
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._local = (Session(options.local_principal, float("inf"),
                               secrets.token_urlsafe(16))
                       if verifier is None and options.local_principal else None)

    # --- who is asking ------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        """The signed-in session of ``request`` (with auth off: the local principal)."""
        if self._local is not None:
            return self._local
        return self.codec.loads(request.cookies.get(COOKIE))

    def login_allowed(self, request: Request) -> bool:
        """Counts a sign-in attempt from the request's address; False past the limit."""
        address = request.client.host if request.client else "?"
        return self._limiter.hit(self._login_limit, "console-login", address)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    # --- responses ----------------------------------------------------------------------

    def render(self, request: Request, name: str, context: dict[str, Any], *,
               session: Session | None, status: int = 200) -> Response:
        """Render ``name`` with the common context (user, CSRF token, navigation)."""
        base = {"session": session, "prefix": PREFIX, "path": request.url.path,
                "csrf": session.csrf_token(self.codec.secret) if session else "",
                "auth_on": self.verifier is not None}
        return self.templates.TemplateResponse(request, name, {**base, **context},
                                               status_code=status)

    def error(self, request: Request, session: Session | None, exc: BaseException) -> Response:
        """The page for a refused call (the service's errors, by kind)."""
        status, title = 500, "Something went wrong"
        headers: dict[str, str] = {}
        if isinstance(exc, TaskNotFound):
            status, title = 404, "No such task"
        elif isinstance(exc, PermissionDenied):
            status, title = 403, "Not allowed"
        elif isinstance(exc, RateLimited):
            status, title = 429, "Too many requests"
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        elif isinstance(exc, InvalidRequest):
            status, title = 400, "Invalid request"
        elif isinstance(exc, BrokerUnavailable):
            status, title = 503, "Unavailable"
        message = str(exc) if status != 500 else "the server could not complete this request"
        if isinstance(exc, TaskNotFound):
            message = "No task with this id is visible to you."
        response = self.render(request, "error.html", {"title": title, "message": message},
                               session=session, status=status)
        response.headers.update(headers)
        return response


Handler = Callable[[Request, Console, Session], Awaitable[Response]]


def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Runs ``handler`` for a signed-in user (a POST also needs a valid CSRF token); others
    are sent to the sign-in page (GET) or refused (POST)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        console: Console = request.app.state.console
        session = console.session(request)
        if request.method == "POST":
            if session is None:
                return console.render(request, "error.html", {
                    "title": "Signed out", "message": "Sign in again to do this."},
                    session=None, status=403)
            form = await request.form()
            given = form.get("csrf")
            if not console.codec.csrf_ok(session, given if isinstance(given, str) else None):
                return console.render(request, "error.html", {
                    "title": "Refused", "message": "The form's CSRF token is missing or "
                    "wrong; reload the page and try again."}, session=session, status=403)
        elif session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", 303)
        try:
            return await handler(request, console, session)
        except (TaskNotFound, PermissionDenied, RateLimited, InvalidRequest,
                BrokerUnavailable) as exc:
            return console.error(request, session, exc)
        except Exception:
            log.exception("console page %s failed", request.url.path)
            return console.error(request, session, RuntimeError())

    return endpoint


class SecurityHeaders:
    """Adds the console's security headers and refuses cross-site POSTs (``Origin`` of
    another host, or ``Sec-Fetch-Site: cross-site``) before anything reads the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if scope["method"] == "POST" and _cross_site(headers):
            response = Response("cross-site request refused", status_code=403,
                                media_type="text/plain")
            await response(scope, receive, send)
            return
        static = scope["path"].startswith(f"{PREFIX}/static/") or \
            scope["path"].startswith("/static/")

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    # not "no-referrer": Chromium then sends "Origin: null" with every POST
                    (b"referrer-policy", b"same-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)


def _cross_site(headers: dict[str, str]) -> bool:
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if not origin:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


def create_console_app(service: TaskService, *, verifier: TokenVerifier | None,
                       watcher: TaskWatcher, options: ConsoleOptions | None = None
                       ) -> tuple[ASGIApp, Console]:
    """The console app (to mount at ``/ui``) and its state (for one-time sign-in codes)."""
    console = Console(service, verifier=verifier, watcher=watcher,
                      options=options or ConsoleOptions())
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/login/once", pages.login_once, methods=["GET"]),
        Route("/logout", signed_in(pages.logout), methods=["POST"]),
        Route("/tasks", signed_in(pages.tasks), methods=["GET"]),
        Route("/tasks/{task_id}", signed_in(pages.task), methods=["GET"]),
        Route("/tasks/{task_id}/result.json", signed_in(pages.result_json), methods=["GET"]),
        Route("/tasks/{task_id}/cancel", signed_in(pages.cancel), methods=["POST"]),
        Route("/tasks/{task_id}/retry", signed_in(pages.retry), methods=["POST"]),
        Route("/tasks/{task_id}/events", signed_in(pages.task_events), methods=["GET"]),
        Route("/events", signed_in(pages.list_events), methods=["GET"]),
        Route("/failed", signed_in(pages.failed), methods=["GET"]),
        Route("/failed/retry", signed_in(pages.retry_selected), methods=["POST"]),
        Route("/workers", signed_in(pages.workers), methods=["GET"]),
        Route("/types", signed_in(pages.types), methods=["GET"]),
        Route("/types/{name}/start", signed_in(pages.start), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    return SecurityHeaders(app), console


# --- template filters ----------------------------------------------------------------------


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    return f"{_seconds(max(0.0, seconds))} ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)

