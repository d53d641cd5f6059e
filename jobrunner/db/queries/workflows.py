"""Statements of workflows, batches and chains: each insert is one call of a function of
migration 0007, so that it is one statement for both clients (the sync client runs the same
parameters through `queries.sync`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from jobrunner.core.job import _STATES, Job, inserted
from jobrunner.core.new_job import NewJob
from jobrunner.core.workflow import InsertedBatch, InsertedWorkflow, InvalidWorkflow, Workflow
from jobrunner.db.queries.insert import _new_job, insert_jobs, job_columns
from jobrunner.db.queries.jobs import Conn, _fetch, _sql, readable

INSERT_WORKFLOW = _sql("insert_workflow")
INSERT_BATCH = _sql("insert_batch")
INSERT_CHAIN = _sql("insert_chain")
DEP_RESULTS = _sql("dep_results")
WORKFLOW_STEPS = _sql("workflow_steps")
CANCEL_WORKFLOW = _sql("cancel_workflow")
BATCH_CALLBACKS = _sql("batch_callbacks")

WORKFLOW_ERROR = "JRW01"  # SQLSTATE of the insert functions' refusals
_UNIQUE_VIOLATION = "23505"


def refusal(exc: BaseException) -> InvalidWorkflow | None:
    """The InvalidWorkflow for a refusal of the workflow insert, else None."""
    state = getattr(exc, "sqlstate", None)
    if state == WORKFLOW_ERROR:
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        return InvalidWorkflow(message)
    if state == _UNIQUE_VIOLATION and "workflow_step" in str(exc):
        return InvalidWorkflow("another insert added a step of the same name at the same time")
    return None


def workflow_params(wf: Workflow) -> tuple[Any, ...]:
    """INSERT_WORKFLOW's parameters: the steps in an order where deps come first."""
    steps = wf.check()
    return (
        wf.workflow_id,
        wf.name,
        wf.of_job,
        [s.name for s in steps],
        *job_columns([s.job for s in steps]),
        [json.dumps(list(s.deps)) for s in steps],
        [s.ignore_cancelled for s in steps],
        [s.ignore_discarded for s in steps],
        wf.existing_deps(),
    )


def workflow_result(wf: Workflow, rows: list[Any]) -> InsertedWorkflow:
    jobs: dict[str, Job] = {}
    workflow_id = 0
    for row in rows:
        step = wf.steps[row["step"]]
        workflow_id = row["workflow_id"]
        jobs[step.name] = replace(_built(step.job, row), workflow_id=workflow_id, step=step.name)
    ordered = {name: jobs[name] for name in wf.steps}
    return InsertedWorkflow(workflow_id, wf.name, ordered)


def _built(job: NewJob, row: Any) -> Job:
    new = _new_job(job, job.encoded_args(), job.encoded_meta())
    return inserted(new, row["id"], _STATES[row["state"]], row["inserted_at"], row["scheduled_at"])


async def insert_workflow(conn: Conn, wf: Workflow) -> InsertedWorkflow:
    """Insert every step of `wf` in one statement (see sql/insert_workflow.sql)."""
    params = workflow_params(wf)
    try:
        rows = await _fetch(conn, INSERT_WORKFLOW, *params)
    except Exception as exc:
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        raise
    return workflow_result(wf, rows)


def batch_params(jobs: Sequence[NewJob], callbacks: dict[str, NewJob]) -> tuple[Any, ...]:
    encoded = {
        condition: {
            "worker": job.worker,
            "queue": job.queue,
            "args": job.args,
            "meta": job.meta,
            "tags": list(job.tags),
            "priority": job.priority,
            "max_attempts": job.max_attempts,
        }
        for condition, job in callbacks.items()
    }
    return (json.dumps(encoded), *job_columns(jobs))


def batch_result(jobs: Sequence[NewJob], rows: list[Any]) -> InsertedBatch:
    built = [_built(job, row) for job, row in zip(jobs, rows, strict=True)]
    return InsertedBatch(rows[0]["batch_id"], built)


async def insert_batch(
    conn: Conn, jobs: Sequence[NewJob], callbacks: dict[str, NewJob]
) -> InsertedBatch:
    """Insert a batch's jobs and record its callbacks, in one statement."""
    rows = await _fetch(conn, INSERT_BATCH, *batch_params(jobs, callbacks))
    return batch_result(jobs, rows)


async def batch_callbacks(conn: Conn, batch_id: int) -> list[Job]:
    """The batch's callback jobs inserted and not run yet (testing inline mode)."""
    return [readable(row) for row in await _fetch(conn, BATCH_CALLBACKS, batch_id)]


def chain_groups(jobs: Sequence[NewJob]) -> list[tuple[str, list[int]]]:
    """The chains among `jobs` (sorted by key, so that inserts lock chains in one order) and
    the indexes of their jobs, in order."""
    groups: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        if job.chain is not None:
            groups.setdefault(job.chain, []).append(index)
    return sorted(groups.items())


def chain_params(chain: str, jobs: Sequence[NewJob]) -> tuple[Any, ...]:
    return (chain, *job_columns(jobs))


def chain_result(jobs: Sequence[NewJob], rows: list[Any]) -> list[Job]:
    return [_built(job, row) for job, row in zip(jobs, rows, strict=True)]


async def insert_chain(conn: Conn, chain: str, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert `jobs` at the end of `chain`, in order (call it inside a transaction when
    inserting into several chains)."""
    rows = await _fetch(conn, INSERT_CHAIN, *chain_params(chain, jobs))
    return chain_result(jobs, rows)


def dep_results_of(rows: list[Any]) -> dict[str, Any]:
    return {
        row["step"]: None if row["result"] is None else json.loads(row["result"]) for row in rows
    }


async def dep_results(conn: Conn, job_id: int) -> dict[str, Any]:
    """The results its deps recorded, by step name, for the workflow step `job_id` (a dep
    that recorded nothing maps to None)."""
    return dep_results_of(await _fetch(conn, DEP_RESULTS, job_id))


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of a workflow as `workflows show` lists it."""

    job: Job
    step: str
    deps: tuple[str, ...]
    waiting_on: tuple[str, ...]  # deps not finished yet (only while the step waits)


@dataclass(frozen=True, slots=True)
class WorkflowView:
    id: int
    name: str
    inserted_at: datetime
    steps: list[StepRow]


def workflow_view(rows: list[Any]) -> WorkflowView | None:
    if not rows:
        return None
    first = rows[0]
    steps = [
        StepRow(
            readable(row),
            row["step"],
            tuple(row["deps"] or ()),
            tuple(row["waiting_on"] or ()),
        )
        for row in rows
        if row["id"] is not None
    ]
    return WorkflowView(first["workflow_id"], first["workflow_name"], first["workflow_at"], steps)


async def workflow_steps(conn: Conn, workflow_id: int) -> WorkflowView | None:
    """The workflow and its steps in id order, or None when there is no such workflow."""
    return workflow_view(await _fetch(conn, WORKFLOW_STEPS, workflow_id))


async def cancel_workflow(conn: Conn, workflow_id: int) -> list[int]:
    """Cancel every unfinished step of the workflow; the ids cancelled."""
    rows = await _fetch(conn, CANCEL_WORKFLOW, workflow_id)
    return [row["id"] for row in rows]


async def insert_with_chains(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert `jobs`, some of them chained, in one transaction (the caller's, when `conn` is
    a connection; else one of the pool's): the chained ones one chain at a time, the others
    in one statement. The result is in the order of `jobs`."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as own, own.transaction():
            return await _insert_with_chains(own, jobs)
    return await _insert_with_chains(conn, jobs)


async def _insert_with_chains(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    results: dict[int, Job] = {}
    for chain, indexes in chain_groups(jobs):
        chained = await insert_chain(conn, chain, [jobs[i] for i in indexes])
        results.update(zip(indexes, chained, strict=True))
    rest = [i for i in range(len(jobs)) if i not in results]
    if rest:
        plain = await insert_jobs(conn, [jobs[i] for i in rest])
        results.update(zip(rest, plain, strict=True))
    return [results[i] for i in range(len(jobs))]
