"""The dashboard: an ASGI app over a client, with pages under `/` and a JSON API under `/api`.

It needs the `web` extra (`pip install 'jobrunner[web]'`: Starlette, uvicorn, Jinja2).

Example:
    >>> from jobrunner.web import app
    >>> fastapi_app.mount("/jobs", app(client, authorize=lambda request: "admin"))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from jobrunner.core.errors import ConfigError

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected

Access = Literal["admin", "read-only"]
"""What a request may do: everything, or look only. None refuses it."""

Authorize = Callable[[Any], "Access | Awaitable[Access | None] | None"]

EXTRA_MISSING = (
    "the dashboard needs the 'web' extra (Starlette, uvicorn, Jinja2): pip install 'jobrunner[web]'"
)


def require_extra() -> None:
    """Raise ConfigError naming the `web` extra when its packages are missing."""
    try:
        import jinja2  # noqa: F401
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA_MISSING) from None


def app(
    client: Connected,
    *,
    authorize: Authorize | None = None,
    auth: str | None = None,
    token: str | None = None,
    read_only: bool = False,
    poll_interval_s: float = 1.0,
) -> Any:
    """The dashboard as an ASGI app, to serve alone or mount inside another app.

    Args:
        client: a connected `jobrunner.Client` (its pool serves every page).
        authorize: called with each Starlette `Request`; returns "admin", "read-only" or
            None (refused, 403). It may be async. The host app's own auth goes here.
        auth: "user:password" for HTTP basic auth.
        token: a bearer token (`Authorization: Bearer ...`), admin like `auth`.
        read_only: hide and refuse every action, whatever `authorize` says.
        poll_interval_s: how often open pages refresh while visible.

    With neither `authorize`, `auth` nor `token`, every request is admin: bind to
    127.0.0.1 (the default of `jobrunner web`).

    Example:
        >>> from starlette.applications import Starlette
        >>> from starlette.routing import Mount
        >>> host = Starlette(routes=[Mount("/jobs", app=jobrunner.web.app(client))])
    """
    require_extra()
    from jobrunner.web.dashboard import Dashboard
    from jobrunner.web.server import build

    return build(
        Dashboard(
            client,
            authorize=authorize,
            auth=auth,
            token=token,
            read_only=read_only,
            poll_interval_s=poll_interval_s,
        )
    )


__all__ = ["EXTRA_MISSING", "Access", "Authorize", "app", "require_extra"]
