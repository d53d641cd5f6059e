"""Job commands: `jobrunner jobs list|show|retry|cancel` and `jobrunner enqueue`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer

from jobrunner.cli.app import ConfigOption, DsnOption, app, fail, load_settings
from jobrunner.cli.common import AppOption, JsonOption, with_client
from jobrunner.cli.filter import (
    AfterOption,
    AllOption,
    ArgsOption,
    BeforeOption,
    QueueOption,
    StateOption,
    TagOption,
    WorkerOption,
    YesOption,
    build_filter,
    bulk,
)
from jobrunner.cli.workflows import WorkflowOption, workflow_jobs
from jobrunner.client import Client
from jobrunner.core.apps import import_apps
from jobrunner.core.errors import JobNotFound
from jobrunner.core.job import FINISHED_STATES, Job, JobState
from jobrunner.core.job_filter import JobFilter
from jobrunner.core.new_job import NewJob
from jobrunner.core.worker import registered
from jobrunner.db import queries as _queries
from jobrunner.ops.status import job_json, table

jobs_app = typer.Typer(
    name="jobs", help="List, show, retry, cancel and delete jobs.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")

IdsArgument = Annotated[list[str] | None, typer.Argument(help="Job ids.", show_default=False)]
ARGS_WIDTH = 48


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _short(at: datetime | None) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%d %H:%M:%SZ")


def _args(job: Job) -> str:
    text = json.dumps(job.args, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= ARGS_WIDTH else text[: ARGS_WIDTH - 3] + "..."


def parse_ids(ids: Sequence[str]) -> list[int]:
    numbers = []
    for raw in ids:
        if not raw.isdigit():
            fail(f"job id must be a whole number, got {raw!r}")
        numbers.append(int(raw))
    return numbers


@jobs_app.command("list")
def list_jobs(
    state: StateOption = None,
    queue: QueueOption = None,
    worker: WorkerOption = None,
    tag: TagOption = None,
    args: ArgsOption = None,
    inserted_after: AfterOption = None,
    inserted_before: BeforeOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 20,
    workflow: WorkflowOption = None,
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """The newest jobs matching every filter given."""
    job_filter = build_filter(state, queue, worker, tag, args, inserted_after, inserted_before)
    settings = load_settings(config, database_url=dsn)
    if workflow is not None:
        found = with_client(settings, lambda c: workflow_jobs(c, workflow, job_filter, limit))
    else:
        found = with_client(settings, lambda c: _queries.list_jobs(c.pool, job_filter, limit=limit))
    if json_out:
        typer.echo(json.dumps([job_json(j) for j in found], indent=2))
        return
    if not found:
        typer.echo("no job matches")
        return
    rows = [
        (
            j.id,
            j.state.value,
            j.queue,
            j.worker,
            f"{j.attempt}/{j.max_attempts}",
            _short(j.scheduled_at),
            _args(j),
        )
        for j in found
    ]
    for line in table(("ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "SCHEDULED", "ARGS"), rows):
        typer.echo(line)


@jobs_app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """One job in full: args, meta, and every error with its traceback."""
    (number,) = parse_ids([job_id])
    settings = load_settings(config, database_url=dsn)
    job = with_client(settings, lambda c: _existing(c, number))
    typer.echo(json.dumps(job_json(job), indent=2) if json_out else render_job(job))


async def _existing(client: Client, job_id: int) -> Job:
    job = await client.get_job(job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id}; see 'jobrunner jobs list'")
    return job


def render_job(job: Job) -> str:
    fields = [
        ("state", job.state.value),
        ("queue", job.queue),
        ("worker", job.worker),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("priority", job.priority),
        ("tags", ", ".join(job.tags) or None),
        ("inserted_at", _iso(job.inserted_at)),
        ("scheduled_at", _iso(job.scheduled_at)),
        ("attempted_at", _iso(job.attempted_at)),
        ("completed_at", _iso(job.completed_at)),
        ("discarded_at", _iso(job.discarded_at)),
        ("cancelled_at", _iso(job.cancelled_at)),
        ("attempted_by", ", ".join(job.attempted_by) or None),
    ]
    if job.workflow_id is not None:
        fields.append(("workflow", f"{job.workflow_id}, step {job.step!r}"))
    lines = [f"job {job.id}"] + [f"  {name:<13} {'-' if v is None else v}" for name, v in fields]
    for name, value in (("args", job.args), ("meta", job.meta)):
        lines.append(name)
        lines += ["  " + line for line in json.dumps(value, indent=2).splitlines()]
    lines.append(f"errors ({len(job.errors)})")
    for error in job.errors:
        lines.append(f"  attempt {error.attempt} at {error.at}: {error.error}")
        lines += ["    " + line for line in (error.traceback or "").rstrip().splitlines()]
    if job.result is not None:
        lines.append("result")
        lines += ["  " + line for line in json.dumps(job.result, indent=2).splitlines()]
    return "\n".join(lines)


@jobs_app.command("retry")
def retry(
    ids: IdsArgument = None,
    state: StateOption = None,
    queue: QueueOption = None,
    worker: WorkerOption = None,
    tag: TagOption = None,
    args: ArgsOption = None,
    inserted_after: AfterOption = None,
    inserted_before: BeforeOption = None,
    yes: YesOption = False,
    all_jobs: AllOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Run jobs again now: by id, or every job matching the filters (not executing ones)."""
    job_filter = build_filter(state, queue, worker, tag, args, inserted_after, inserted_before)
    _ids_or_filter(ids, job_filter, all_jobs)
    if job_filter.states is not None and "executing" in job_filter.states:
        fail("executing jobs cannot be retried; cancel them first")
    settings = load_settings(config, database_url=dsn)
    if not ids:
        bulk(settings, "retry", job_filter, yes=yes, all_jobs=all_jobs)
        return
    numbers = parse_ids(ids)
    refused = with_client(settings, lambda c: _retry_ids(c, numbers))
    if refused:
        fail(f"not retried: {', '.join(refused)}", 1)


def _ids_or_filter(ids: Sequence[str] | None, job_filter: JobFilter, all_jobs: bool) -> None:
    if ids and (not job_filter.empty or all_jobs):
        fail("give job ids or filters (--state, --queue, ...), not both")


async def _retry_ids(client: Client, ids: Sequence[int]) -> list[str]:
    """Retry each job (all must exist); the ones that could not be, with why."""
    before = [await _existing(client, i) for i in ids]
    refused = []
    for job in before:
        after = await client.retry_job(job.id)
        if after.state is JobState.AVAILABLE:
            typer.echo(f"retried job {job.id} ({job.state.value} -> available)")
        else:
            refused.append(f"job {job.id} is {after.state.value}, wait for it to end or cancel it")
    return refused


@jobs_app.command("cancel")
def cancel(
    ids: IdsArgument = None,
    state: StateOption = None,
    queue: QueueOption = None,
    worker: WorkerOption = None,
    tag: TagOption = None,
    args: ArgsOption = None,
    inserted_after: AfterOption = None,
    inserted_before: BeforeOption = None,
    yes: YesOption = False,
    all_jobs: AllOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Cancel jobs that have not finished, by id or by filters; an executing job is stopped
    on its node."""
    job_filter = build_filter(state, queue, worker, tag, args, inserted_after, inserted_before)
    _ids_or_filter(ids, job_filter, all_jobs)
    settings = load_settings(config, database_url=dsn)
    if not ids:
        bulk(settings, "cancel", job_filter, yes=yes, all_jobs=all_jobs)
        return
    numbers = parse_ids(ids)
    refused = with_client(settings, lambda c: _cancel_ids(c, numbers))
    if refused:
        fail(f"not cancelled: {', '.join(refused)}", 1)


@jobs_app.command("delete")
def delete(
    ids: IdsArgument = None,
    state: StateOption = None,
    queue: QueueOption = None,
    worker: WorkerOption = None,
    tag: TagOption = None,
    args: ArgsOption = None,
    inserted_after: AfterOption = None,
    inserted_before: BeforeOption = None,
    yes: YesOption = False,
    all_jobs: AllOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Delete jobs that are not executing, by id or by filters."""
    job_filter = build_filter(state, queue, worker, tag, args, inserted_after, inserted_before)
    _ids_or_filter(ids, job_filter, all_jobs)
    settings = load_settings(config, database_url=dsn)
    if not ids:
        bulk(settings, "delete", job_filter, yes=yes, all_jobs=all_jobs)
        return
    numbers = parse_ids(ids)
    refused = with_client(settings, lambda c: _delete_ids(c, numbers))
    if refused:
        fail(f"not deleted: {', '.join(refused)}", 1)


async def _delete_ids(client: Client, ids: Sequence[int]) -> list[str]:
    for job_id in ids:
        await _existing(client, job_id)
    refused = []
    for job_id in ids:
        if await client.delete_job(job_id):
            typer.echo(f"deleted job {job_id}")
        else:
            refused.append(f"job {job_id} is executing, cancel it first")
    return refused


async def _cancel_ids(client: Client, ids: Sequence[int]) -> list[str]:
    before = [await _existing(client, i) for i in ids]
    refused = []
    for job in before:
        if job.state in FINISHED_STATES:
            if job.state is JobState.CANCELLED:
                typer.echo(f"job {job.id} was already cancelled")
            else:
                refused.append(f"job {job.id} already {job.state.value}")
            continue
        after = await client.cancel_job(job.id)
        if after.state is not JobState.CANCELLED:
            refused.append(f"job {job.id} already {after.state.value}")
        elif job.state is JobState.EXECUTING and job.attempted_by:
            typer.echo(f"cancelled job {job.id} (executing on {job.attempted_by[0]}: stopping it)")
        else:
            typer.echo(f"cancelled job {job.id} (was {job.state.value})")
    return refused


def _json_object(option: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        fail(f"{option} is not valid JSON ({exc}); give an object like '{{\"user_id\": 42}}'")
    except RecursionError:
        fail(f"{option} is nested too deeply to read; give a flatter JSON object")
    if not isinstance(value, dict):
        fail(
            f"{option} must be a JSON object like '{{\"user_id\": 42}}', "
            f"got {type(value).__name__} {raw!r}"
        )
    return value


@app.command()
def enqueue(
    worker: Annotated[str, typer.Argument(help="A registered worker name (see --app).")],
    args: Annotated[str, typer.Option("--args", help="The job's args, a JSON object.")] = "{}",
    meta: Annotated[str, typer.Option("--meta", help="The job's meta, a JSON object.")] = "{}",
    queue: QueueOption = None,
    priority: Annotated[int | None, typer.Option(help="0 (first) to 9.")] = None,
    schedule_in: Annotated[
        float | None, typer.Option("--schedule-in", help="Run in this many seconds.")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Repeat for several.")] = None,
    app_modules: AppOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Insert even if no registered worker has that name.")
    ] = False,
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """Insert one job. The worker's options are the defaults; flags override them."""
    options: dict[str, Any] = {
        "args": _json_object("--args", args),
        "meta": _json_object("--meta", meta),
        "queue": queue,
        "priority": priority,
        "schedule_in": schedule_in,
        "max_attempts": max_attempts,
        "tags": tag,
    }
    settings = load_settings(
        config, database_url=dsn, app=tuple(app_modules) if app_modules else None
    )

    def build() -> NewJob:
        import_apps(settings.app)
        return _new_job(worker, options, force=force, modules=settings.app)

    job, served = with_client(settings, lambda c: _enqueue(c, build))
    _enqueued(job, served, json_out)


def _new_job(
    worker: str, options: dict[str, Any], *, force: bool, modules: Sequence[str]
) -> NewJob:
    """The job for a registered worker (its options as defaults), or, with --force, any name."""
    found = registered().get(worker)
    if found is not None:
        return found.new(**options)
    if not force:
        fail(
            f"unknown worker {worker!r}: no registered worker has that name (app modules: "
            f"{', '.join(modules) or 'none given'}); pass --app MODULE that defines it, or "
            "--force to insert it anyway"
        )
    typer.echo(f"warning: no registered worker is named {worker!r}; inserting anyway", err=True)
    given = {k: v for k, v in options.items() if v is not None}
    return NewJob(worker=worker, **{**given, "tags": tuple(options["tags"] or ())})


def _enqueued(job: Job, served: bool, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps({**job_json(job), "conflict": job.conflict}, indent=2))
    else:
        when = (
            job.state.value
            if job.state is not JobState.SCHEDULED
            else (f"scheduled for {_short(job.scheduled_at)}")
        )
        head = f"job {job.id} already exists (unique)" if job.conflict else f"enqueued job {job.id}"
        typer.echo(f"{head}: {job.worker} in queue {job.queue!r}, {when}")
    if not served:
        typer.echo(
            f"note: no live node serves queue {job.queue!r}; the job waits until one does", err=True
        )


async def _enqueue(client: Client, build: Any) -> tuple[Job, bool]:
    job: Job = await client.insert(build())
    nodes = await _queries.status_nodes(client.pool)
    return job, any(n.live and job.queue in n.queues for n in nodes)
