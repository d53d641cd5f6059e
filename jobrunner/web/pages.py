"""Pages (each with a fragment that open pages poll) and the JSON API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from jobrunner.db import queries as _queries
from jobrunner.ops.status import job_json
from jobrunner.web import data, live
from jobrunner.web.data import STATES, BadFilter

if TYPE_CHECKING:
    from jobrunner.web.dashboard import Dashboard


def routes(dashboard: Dashboard) -> list[Route]:
    views = _Views(dashboard)
    return [
        Route("/", views.overview, name="overview"),
        Route("/partial/overview", views.overview_fragment, name="overview_fragment"),
        Route("/jobs", views.jobs, name="jobs"),
        Route("/partial/jobs", views.jobs_fragment, name="jobs_fragment"),
        Route("/jobs/{job_id:int}", views.job, name="job"),
        Route("/partial/jobs/{job_id:int}", views.job_fragment, name="job_fragment"),
        Route("/cron", views.cron, name="cron"),
        Route("/partial/cron", views.cron_fragment, name="cron_fragment"),
        Route("/api/queues", views.api_queues, name="api_queues"),
        Route("/api/jobs", views.api_jobs, name="api_jobs"),
        Route("/api/jobs/{job_id:int}", views.api_job, name="api_job"),
    ]


class _Views:
    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    def render(self, request: Request, name: str, **context: Any) -> Response:
        context.update(
            admin=request.state.access == "admin",
            csrf=request.state.csrf,
            poll_ms=int(self.d.poll_interval_s * 1000),
            states=STATES,
        )
        return self.d.templates.TemplateResponse(request, name, context)

    async def fragment(
        self, request: Request, name: str, context: Callable[[], Awaitable[dict[str, Any]]]
    ) -> Response:
        """A live fragment, rendered once per interval for every viewer of the same URL and
        access, with the viewer's own CSRF token put in."""
        admin = request.state.access == "admin"

        async def render() -> str:
            found = await context()
            found.update(request=request, admin=admin, csrf=live.CSRF_SLOT, states=STATES)
            return self.d.templates.get_template(name).render(found)

        key = (name, request.url.path, request.url.query, str(admin))
        text = await self.d.fragments.get(key, render)
        return HTMLResponse(text.replace(live.CSRF_SLOT, str(request.state.csrf)))

    # --- overview ------------------------------------------------------------------------

    async def _overview(self) -> dict[str, Any]:
        found = await self.d.cache.get(self.d.client)
        peak = max((sum(m[s] for s in live.CHART_STATES) for m in found.minutes), default=0)
        return {"o": found, "peak": max(peak, 1)}

    async def overview(self, request: Request) -> Response:
        return self.render(request, "overview.html", page="overview", **await self._overview())

    async def overview_fragment(self, request: Request) -> Response:
        return await self.fragment(request, "_overview.html", self._overview)

    async def api_queues(self, request: Request) -> Response:
        found = await self.d.cache.get(self.d.client)
        return JSONResponse(found.to_json())

    # --- jobs ----------------------------------------------------------------------------

    async def _jobs(self, request: Request) -> dict[str, Any]:
        query = request.query_params
        order = query.get("order") or "newest"
        if order not in ("newest", "oldest"):
            raise HTTPException(400, f"order must be newest or oldest, got {order!r}")
        key = "before" if order == "newest" else "after"
        try:
            where = data.parse_filter(query, query.getlist("state"))
            at = data.int_param(query.get(key), key, None, low=0, high=2**63 - 1)
            limit = data.int_param(
                query.get("limit"), "limit", data.PAGE_SIZE, low=1, high=data.MAX_PAGE_SIZE
            )
        except BadFilter as exc:
            raise HTTPException(400, str(exc)) from None
        assert limit is not None
        oldest = order == "oldest"
        jobs, cursor = await data.list_jobs(
            self.d.client, where, cursor=at, limit=limit, oldest=oldest
        )
        pairs = data.filter_query(where) + ([("order", "oldest")] if oldest else [])
        page_pairs = [*pairs, *([(key, str(at))] if at is not None else []), ("limit", str(limit))]
        next_pairs = [*pairs, (key, str(cursor))] if cursor else None
        return {
            "jobs": jobs,
            "where": where,
            "order": order,
            "filter_pairs": data.filter_query(where),
            "query": urlencode(pairs),
            "page_query": urlencode(page_pairs),
            "flip_query": urlencode(
                data.filter_query(where) + ([] if oldest else [("order", "oldest")])
            ),
            "next_query": urlencode(next_pairs) if next_pairs else None,
            "first_page": at is None,
            "next_key": f"next_{key}",
            "next_cursor": cursor,
        }

    async def jobs(self, request: Request) -> Response:
        return self.render(request, "jobs.html", page="jobs", **await self._jobs(request))

    async def jobs_fragment(self, request: Request) -> Response:
        return await self.fragment(request, "_jobs.html", lambda: self._jobs(request))

    async def api_jobs(self, request: Request) -> Response:
        found = await self._jobs(request)
        return JSONResponse(
            {
                "jobs": [job_json(j) for j in found["jobs"]],
                found["next_key"]: found["next_cursor"],
            }
        )

    # --- one job -------------------------------------------------------------------------

    async def _job(self, request: Request) -> dict[str, Any]:
        job = await _queries.get_job(self.d.client.pool, request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, f"no job with id {request.path_params['job_id']}")
        return {"job": job, "timeline": data.timeline(job)}

    async def job(self, request: Request) -> Response:
        return self.render(request, "job.html", page="jobs", **await self._job(request))

    async def job_fragment(self, request: Request) -> Response:
        return await self.fragment(request, "_job.html", lambda: self._job(request))

    async def api_job(self, request: Request) -> Response:
        return JSONResponse(job_json((await self._job(request))["job"]))

    # --- cron ----------------------------------------------------------------------------

    async def cron(self, request: Request) -> Response:
        found = await self.d.cache.get(self.d.client)
        return self.render(request, "cron.html", page="cron", o=found)

    async def cron_fragment(self, request: Request) -> Response:
        async def context() -> dict[str, Any]:
            return {"o": await self.d.cache.get(self.d.client)}

        return await self.fragment(request, "_cron.html", context)
