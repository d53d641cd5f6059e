"""The dashboard's state: the client, who may do what (the auth hook, basic auth, a bearer
token, read-only), the templates and the overview shared by every viewer."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import jinja2
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from jobrunner.web.data import safe
from jobrunner.web.live import FragmentCache, OverviewCache

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected
    from jobrunner.web import Access, Authorize


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
    fragments: FragmentCache = field(init=False)
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        if self.auth is not None and ":" not in self.auth:
            raise ValueError("auth must be 'user:password'")
        self.cache = OverviewCache(ttl_s=min(self.poll_interval_s, 1.0))
        self.fragments = FragmentCache(ttl_s=min(self.poll_interval_s, 1.0))
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("jobrunner.web", "templates"),
            autoescape=True,  # every value is escaped: a job's args are data, never markup
            undefined=jinja2.StrictUndefined,
        )
        env.filters["safe_text"] = safe
        env.filters["pretty"] = _pretty
        env.filters["compact"] = _compact
        self.templates = Jinja2Templates(env=env)

    def forget(self) -> None:
        """Drop what is shared between viewers: after an action, pages show its effect."""
        self.cache.clear()
        self.fragments.clear()

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


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
