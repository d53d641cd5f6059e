"""The Starlette app: authentication, CSRF, security headers, pages, the JSON API, actions."""

from __future__ import annotations

import secrets
from importlib.resources import files

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobrunner.web import actions, pages
from jobrunner.web.dashboard import Dashboard

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
