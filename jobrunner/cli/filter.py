"""The job filter on the command line: its options, and bulk actions with their confirmation."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from jobrunner.cli.app import fail
from jobrunner.cli.common import with_client
from jobrunner.client import BULK_BATCH_SIZE, Client
from jobrunner.core.config import Settings
from jobrunner.core.errors import InvalidFilter
from jobrunner.core.job_filter import JobFilter
from jobrunner.db import queries as _queries

StateOption = Annotated[
    list[str] | None,
    typer.Option("--state", "-s", help="Only jobs in this state; repeat for several."),
]
QueueOption = Annotated[str | None, typer.Option("--queue", "-q", help="Only jobs of this queue.")]
WorkerOption = Annotated[
    str | None, typer.Option("--worker", "-w", help="Only jobs of this worker.")
]
TagOption = Annotated[
    list[str] | None, typer.Option("--tag", help="Only jobs with this tag; repeat: all of them.")
]
ArgsOption = Annotated[
    str | None,
    typer.Option("--args", help="Only jobs whose args contain this JSON object."),
]
AfterOption = Annotated[
    str | None,
    typer.Option(
        "--inserted-after", help="Only jobs inserted after this ISO 8601 time (with zone)."
    ),
]
BeforeOption = Annotated[
    str | None,
    typer.Option(
        "--inserted-before", help="Only jobs inserted before this ISO 8601 time (with zone)."
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]
AllOption = Annotated[bool, typer.Option("--all", help="With no filter: every job.")]

PAST = {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}
SHOWN_IDS = 20


def build_filter(
    state: list[str] | None,
    queue: str | None,
    worker: str | None,
    tag: list[str] | None,
    args: str | None,
    inserted_after: str | None,
    inserted_before: str | None,
) -> JobFilter:
    """The filter the options describe; bad input ends the command with one line, exit 2."""
    try:
        return JobFilter.build(
            state=state or None,
            queue=queue,
            worker=worker,
            tags=tag or None,
            args=None if args is None else _args(args),
            inserted_after=_time("--inserted-after", inserted_after),
            inserted_before=_time("--inserted-before", inserted_before),
        )
    except InvalidFilter as exc:
        fail(str(exc))


def _args(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        fail(f"--args is not valid JSON ({exc}); give an object like '{{\"user_id\": 42}}'")
    if not isinstance(value, dict):
        fail(
            f"--args must be a JSON object like '{{\"user_id\": 42}}', "
            f"got {type(value).__name__} {raw!r}"
        )
    return value


def _time(option: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        fail(f"{option} must be an ISO 8601 time like 2026-12-01T08:00:00Z, got {raw!r}")
    if at.tzinfo is None:
        fail(f"{option} needs a time zone (2026-12-01T08:00:00Z or +01:00), got {raw!r}")
    return at


def bulk(
    settings: Settings, action: str, job_filter: JobFilter, *, yes: bool, all_jobs: bool
) -> None:
    """Cancel, retry or delete the matching jobs, once confirmed; print what changed."""
    if job_filter.empty and not all_jobs:
        fail(f"{action} every job? give a filter (--state, --queue, ...), or --all to mean it")
    what = job_filter.describe()
    if not yes:
        count = with_client(
            settings, lambda c: _queries.count_matching_jobs(c.pool, job_filter, action=action)
        )
        if count == 0:
            typer.echo(f"no job to {action} ({what})")
            return
        try:
            confirmed = typer.confirm(f"{action} {count} job{'' if count == 1 else 's'} ({what})?")
        except typer.Abort:
            confirmed = False
        if not confirmed:
            fail("not confirmed, nothing changed (--yes skips the question)", 1)

    async def go(client: Client) -> list[int]:
        return await _queries.bulk_jobs(
            client.pool, job_filter, action=action, batch_size=BULK_BATCH_SIZE
        )

    changed = with_client(settings, go)
    shown = ", ".join(map(str, changed[:SHOWN_IDS])) + (", ..." if len(changed) > SHOWN_IDS else "")
    typer.echo(
        f"{PAST[action]} {len(changed)} job{'' if len(changed) == 1 else 's'} ({what})"
        + (f": {shown}" if changed else "")
    )
