"""The Starlette app: authentication, CSRF, security headers, pages, the JSON API, actions."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import json
import secrets
from dataclasses import dataclass, field
from importlib.resources import files
from typing import TYPE_CHECKING

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobrunner.web import actions, pages
from jobrunner.web.data import OverviewCache, safe

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected
    from jobrunner.web import Access, Authorize

CSRF_COOKIE = "jobrunner_csrf"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "SAMEORIGIN",
}


@dataclass
class Dashboard:
    """The app's state: the client, who may do what, and the shared overview."""

    client: Connected
    authorize: Authorize | None = None
    auth: str | None = None
    token: str | None = None
    read_only: bool = False
    poll_interval_s: float = 1.0
    cache: OverviewCache = field(init=False)
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        if self.auth is not None and ":" not in self.auth:
            raise ValueError("auth must be 'user:password'")
        self.cache = OverviewCache(ttl_s=min(self.poll_interval_s, 1.0))
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("jobrunner.web", "templates"),
            autoescape=True,  # every value is escaped: a job's args are data, never markup
            undefined=jinja2.StrictUndefined,
        )
        env.filters["safe_text"] = safe
        env.filters["pretty"] = _pretty
        self.templates = Jinja2Templates(env=env)

    async def access(self, request: Request) -> tuple[Access | None, str]:
        """What this request may do, and who it is (for the audit log)."""
        header = request.headers.get("authorization", "")
        who = request.client.host if request.client else "unknown"
        if self.auth is not None or self.token is not None:
            user = self._credentials(header)
            if user is None:
                return None, who
            who = user
        if self.authorize is not None:
            decided = self.authorize(request)
            if inspect.isawaitable(decided):
                decided = await decided
            if decided not in ("admin", "read-only", None):
                raise TypeError(f"authorize returned {decided!r}; use 'admin', 'read-only' or None")
            return decided, who
        return "admin", who

    def _credentials(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token is not None:
            return "token" if hmac.compare_digest(value.strip(), self.token) else None
        if scheme.lower() == "basic" and self.auth is not None:
            try:
                given = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            if hmac.compare_digest(given.encode(), self.auth.encode()):
                return given.partition(":")[0]
        return None


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


class Guard:
    """Per request: authenticate, set `state.access`/`state.who`/`state.csrf`, add headers."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        access, who = await self.dashboard.access(request)
        if access is None:
            await _refused(self.dashboard, scope, receive, send)
            return
        if self.dashboard.read_only:
            access = "read-only"
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        fresh = CSRF_COOKIE not in request.cookies
        scope.setdefault("state", {}).update(access=access, who=who, csrf=token)
        path = scope.get("root_path", "") or "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                if fresh:
                    cookie = f"{CSRF_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refused(dashboard: Dashboard, scope: Scope, receive: Receive, send: Send) -> None:
    if dashboard.auth is not None or dashboard.token is not None:
        response: Response = PlainTextResponse(
            "authentication required",
            status_code=401,
            headers={"www-authenticate": 'Basic realm="jobrunner"', **HEADERS},
        )
    else:
        response = PlainTextResponse("forbidden", status_code=403, headers=HEADERS)
    await response(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return PlainTextResponse(f"error: {exc.detail}", status_code=exc.status_code)


def build(dashboard: Dashboard) -> Starlette:
    """The ASGI app of `dashboard`."""
    static = StaticFiles(directory=str(files("jobrunner.web") / "static"))
    routes = [
        *pages.routes(dashboard),
        *actions.routes(dashboard),
        Mount("/static", app=static, name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, dashboard=dashboard)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.dashboard = dashboard
    return app

