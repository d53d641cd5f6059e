"""`jobrunner workflows show|cancel`: a workflow's steps, what each waits on, and cancelling
what has not finished."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from jobrunner.cli.app import ConfigOption, DsnOption, app, load_settings
from jobrunner.cli.common import JsonOption, with_client
from jobrunner.client import Client
from jobrunner.core.errors import JobNotFound
from jobrunner.core.job import Job, JobState
from jobrunner.core.job_filter import JobFilter
from jobrunner.db.queries.workflows import StepRow, WorkflowView
from jobrunner.ops.status import job_json, table

workflows_app = typer.Typer(
    name="workflows",
    help="Show and cancel workflows (jobs that wait on others).",
    no_args_is_help=True,
)
app.add_typer(workflows_app, name="workflows")

WorkflowId = Annotated[int, typer.Argument(metavar="ID", min=1, help="The workflow's id.")]
WorkflowOption = Annotated[
    int | None,
    typer.Option("--workflow", metavar="ID", min=1, help="Only the steps of this workflow."),
]


async def _view(client: Client, workflow_id: int) -> WorkflowView:
    view = await client.get_workflow(workflow_id)
    if view is None:
        raise JobNotFound(f"no workflow with id {workflow_id}")
    return view


async def workflow_jobs(
    client: Client, workflow_id: int, job_filter: JobFilter, limit: int
) -> list[Job]:
    """The newest steps of a workflow that match the filter."""
    view = await client.get_workflow(workflow_id)
    if view is None:
        raise JobNotFound(f"no workflow with id {workflow_id}; see 'jobrunner workflows show'")
    steps = [s.job for s in reversed(view.steps) if job_filter.matches(s.job)]
    return steps[:limit]


def _status(row: StepRow) -> str:
    """What a step is doing, in words: its state, or what it waits on."""
    if row.waiting_on:
        return "waiting on " + ", ".join(row.waiting_on)
    if row.job.state is JobState.CANCELLED and row.job.attempt == 0 and row.job.errors:
        return row.job.errors[-1].error  # cancelled by a dep
    return "-"


def step_json(row: StepRow) -> dict[str, Any]:
    return {
        "step": row.step,
        "deps": list(row.deps),
        "waiting_on": list(row.waiting_on),
        **job_json(row.job),
    }


def render(view: WorkflowView) -> list[str]:
    counts: dict[str, int] = {}
    for row in view.steps:
        counts[row.job.state.value] = counts.get(row.job.state.value, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no steps"
    lines = [f"workflow {view.id} {view.name!r}: {len(view.steps)} steps ({summary})"]
    rows = [
        (
            row.step,
            row.job.id,
            "waiting" if row.waiting_on else row.job.state.value,
            row.job.worker,
            ", ".join(row.deps) or None,
            _status(row),
        )
        for row in view.steps
    ]
    lines += table(("STEP", "JOB", "STATE", "WORKER", "DEPS", "DETAIL"), rows)
    return lines


@workflows_app.command("show")
def show(
    workflow_id: WorkflowId,
    json_out: JsonOption = False,
    dsn: DsnOption = None,
    config: ConfigOption = None,
) -> None:
    """A workflow's steps: state, deps, and what each waiting step still waits on."""
    settings = load_settings(config, database_url=dsn)
    view = with_client(settings, lambda c: _view(c, workflow_id))
    if json_out:
        body = {
            "id": view.id,
            "name": view.name,
            "inserted_at": view.inserted_at.isoformat(),
            "steps": [step_json(row) for row in view.steps],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    for line in render(view):
        typer.echo(line)


@workflows_app.command("cancel")
def cancel(workflow_id: WorkflowId, dsn: DsnOption = None, config: ConfigOption = None) -> None:
    """Cancel every step of a workflow that has not finished (executing ones are stopped)."""
    settings = load_settings(config, database_url=dsn)
    ids = with_client(settings, lambda c: c.cancel_workflow(workflow_id))
    typer.echo(f"cancelled {len(ids)} step(s) of workflow {workflow_id}")
