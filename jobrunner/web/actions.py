"""Actions: POST only, admin only, each with the page's CSRF token, each logged for audit."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jobrunner.client import BULK_BATCH_SIZE
from jobrunner.core import telemetry
from jobrunner.core.errors import JobRunnerError
from jobrunner.core.job_filter import JobFilter
from jobrunner.core.limits import RateLimit
from jobrunner.db import queries as _queries
from jobrunner.ops import commands
from jobrunner.web import data
from jobrunner.web.data import BadFilter

if TYPE_CHECKING:
    from jobrunner.ops.commands import ControlResult
    from jobrunner.web.dashboard import Dashboard

JOB_ACTIONS = ("retry", "cancel", "delete")
QUEUE_ACTIONS = ("pause", "resume", "scale", "global", "global_reset", "rate", "rate_reset")


def routes(dashboard: Dashboard) -> list[Route]:
    acts = _Actions(dashboard)
    return [
        Route("/actions/jobs", acts.jobs, methods=["POST"], name="act_jobs"),
        Route("/actions/queues/{queue}", acts.queue, methods=["POST"], name="act_queue"),
        Route("/actions/nodes", acts.stop, methods=["POST"], name="act_stop"),
    ]


async def _checked_form(request: Request) -> FormData:
    """The form of an allowed action: refused (403) without admin access or the CSRF token."""
    if request.state.access != "admin":
        raise HTTPException(403, "this dashboard is read-only for you")
    form = await request.form()
    given = str(form.get("csrf", ""))
    if not given or not hmac.compare_digest(given, str(request.state.csrf)):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    return form


def audit(request: Request, action: str, **fields: Any) -> None:
    """Log an action (who, what; structlog adds when) and hand it to telemetry subscribers."""
    telemetry.emit(
        telemetry.WEB_ACTION, logging.INFO, {"who": request.state.who, "action": action, **fields}
    )


class _Actions:
    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    def render(self, request: Request, name: str, **context: Any) -> Response:
        context.update(admin=True, csrf=request.state.csrf, poll_ms=0, states=data.STATES)
        return self.d.templates.TemplateResponse(request, name, context)

    async def jobs(self, request: Request) -> Response:
        """Retry, cancel or delete the jobs ticked (`id`), or every job matching the filter
        (`scope=all`); more than one job first shows a count to confirm."""
        form = await _checked_form(request)
        action, _, scope = str(form.get("action", "")).partition(":")
        if action not in JOB_ACTIONS:
            raise HTTPException(400, f"unknown action {action!r}; use retry, cancel or delete")
        every = "all" in (scope, form.get("scope"))
        try:
            where = data.parse_filter(form, [str(s) for s in form.getlist("state")])
            ids = None if every else [int(str(i)) for i in form.getlist("id")]
        except (BadFilter, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
        if ids is not None and not ids:
            raise HTTPException(400, "no job selected")
        if (ids is None or len(ids) > 1) and form.get("confirm") != "yes":
            pool = self.d.client.pool
            count = (
                len(ids)
                if ids is not None
                else await _queries.count_matching_jobs(pool, where, action=action)
            )
            return self.render(
                request,
                "confirm.html",
                page="jobs",
                action=action,
                count=count,
                ids=ids,
                filter_pairs=data.filter_query(where),
            )
        done = await _act_on_jobs(self.d.client.pool, action, where, ids)
        self.d.forget()
        scope = "all matching" if ids is None else "selected"
        audit(request, f"jobs.{action}", scope=scope, job_ids=done, filter=_plain(where))
        if ids is not None and len(ids) == 1:  # one job: back to its page, which shows the change
            page = request.url_for("job", job_id=ids[0]) if action != "delete" else None
            return RedirectResponse(str(page or request.url_for("jobs")), status_code=303)
        back = "jobs?" + urlencode(data.filter_query(where))
        return self.render(
            request, "done.html", page="jobs", action=action, done=done, asked=ids, back=back
        )

    async def queue(self, request: Request) -> Response:
        """Pause, resume or scale a queue on every node (or `node`), or change its global or
        rate limit, through the control table."""
        form = await _checked_form(request)
        queue = request.path_params["queue"]
        action = str(form.get("action", ""))
        node = str(form.get("node", "")).strip() or None
        if action not in QUEUE_ACTIONS:
            raise HTTPException(
                400, f"unknown action {action!r}; use {', '.join(QUEUE_ACTIONS[:-1])} or rate_reset"
            )
        try:
            result = await _queue_command(self.d.client, queue, action, node, form, request)
        except (JobRunnerError, ValueError) as exc:
            raise HTTPException(400, data.safe(str(exc))) from None
        return self._control(request, f"queue.{action}", result)

    async def stop(self, request: Request) -> Response:
        """Stop a node (or every live node) gracefully, as `jobrunner stop`."""
        form = await _checked_form(request)
        node = str(form.get("node", "")).strip() or None
        try:
            result = await commands.stop(
                self.d.client, node, grace_s=None, timeout_s=5, issued_by=_issuer(request)
            )
        except (JobRunnerError, ValueError) as exc:
            raise HTTPException(400, data.safe(str(exc))) from None
        return self._control(request, "node.stop", result)

    def _control(self, request: Request, action: str, result: ControlResult) -> Response:
        self.d.forget()
        audit(
            request,
            action,
            queue=result.queue,
            node=result.node,
            control_id=result.id,
            applied=sorted(result.applied),
            missing=list(result.missing),
        )
        return self.render(request, "control.html", page="overview", action=action, r=result)


async def _act_on_jobs(
    pool: Any, action: str, where: JobFilter, ids: list[int] | None
) -> list[int]:
    """The ids changed: every job matching the shared filter (in the bulk statements' bounded
    batches), or each ticked job through its own one-job statement."""
    if ids is None:
        return await _queries.bulk_jobs(pool, where, action=action, batch_size=BULK_BATCH_SIZE)
    done = []
    for job_id in ids:
        if action == "delete":
            changed = await _queries.delete_job(pool, job_id)
        elif action == "cancel":
            changed = await _queries.cancel_job(pool, job_id) is not None
        else:
            changed = await _queries.retry_job(pool, job_id) is not None
        if changed:
            done.append(job_id)
    return done


async def _queue_command(
    client: Any, queue: str, action: str, node: str | None, form: FormData, request: Request
) -> ControlResult:
    """Issue a queue action through the control table, as the CLI's commands do."""
    common: dict[str, Any] = {"timeout_s": 5, "force": False, "issued_by": _issuer(request)}
    if action == "scale":
        limit = commands.check_limit(_int(form.get("limit"), "limit"))
        return await commands.scale(client, queue, limit, node, **common)
    if action in ("global", "global_reset"):
        number = (
            None if action == "global_reset" else _int(form.get("global_limit"), "global limit")
        )
        return await commands.scale_global(client, queue, number, **common)
    if action in ("rate", "rate_reset"):
        raw = str(form.get("rate_limit", "")).strip()
        rate = None if action == "rate_reset" else RateLimit.parse(raw)
        return await commands.scale_rate(client, queue, rate, **common)
    if action == "pause":
        return await commands.pause(client, queue, node, **common)
    return await commands.resume(client, queue, node, **common)


def _issuer(request: Request) -> str:
    """Who issued a control command from the dashboard, as the control table records it."""
    return f"{request.state.who} (web, {commands.issuer()})"


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _plain(where: JobFilter) -> dict[str, Any]:
    return {k: v for k, v in data.filter_query(where)}
