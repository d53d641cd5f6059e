"""The sync client's statements: the same sql/*.sql, parameters and result building as
`queries`, run on a psycopg connection (`db.psycopg.SyncConn`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from jobrunner.core.job import Job
from jobrunner.core.job_filter import JobFilter
from jobrunner.core.new_job import NewJob
from jobrunner.core.workflow import InsertedBatch, InsertedWorkflow, Workflow
from jobrunner.db import queries as q
from jobrunner.db.queries import control as qc
from jobrunner.db.queries import insert as qi
from jobrunner.db.queries import jobs as qj
from jobrunner.db.queries import workflows as qw
from jobrunner.db.queries.jobs import readable

DEADLOCK = "40P01"  # SQLSTATE deadlock_detected


class SyncConn(Protocol):
    """A connection that runs one of jobrunner's statements and returns its rows."""

    def fetch(self, query: str, *args: Any) -> list[Any]: ...
    def in_transaction(self) -> bool: ...


def insert_jobs(
    conn: SyncConn, jobs: Sequence[NewJob], *, release_on: SyncConn | None = None
) -> list[Job]:
    """Insert `jobs` in one statement (see `queries.insert_jobs`, and its `release_on`)."""
    if all(job.unique is None for job in jobs):
        if len(jobs) == 1:
            params, args, meta = qi.plain_job_params(jobs[0])
            rows = conn.fetch(q.INSERT_PLAIN_JOB, *params)
            return [qi.plain_job_result(jobs[0], args, meta, rows[0])]
        params, all_args, metas = qi.plain_jobs_params(jobs)
        rows = conn.fetch(q.INSERT_PLAIN_JOBS, *params)
        return qi.plain_jobs_result(list(map(qi._new_job, jobs, all_args, metas)), rows[0])
    plan = qi.unique_insert_plan(jobs, release_apart=release_on is not None)
    query, query_args = next(plan)
    while True:
        if query is q.INSERT_JOBS:
            rows = _insert_statement(conn, query_args)
        elif query is q.RELEASE_UNIQUE_KEYS and release_on is not None:
            rows = release_on.fetch(query, *query_args)
        else:
            rows = conn.fetch(query, *query_args)
        try:
            query, query_args = plan.send(rows)
        except StopIteration as done:
            result: list[Job] = done.value
            return result


def _insert_statement(conn: SyncConn, columns: tuple[Any, ...]) -> list[Any]:
    """Run INSERT_JOBS; a deadlock between concurrent inserts is retried outside transactions."""
    for attempt in range(3):
        try:
            return conn.fetch(q.INSERT_JOBS, *columns)
        except Exception as exc:
            deadlock = getattr(exc, "sqlstate", None) == DEADLOCK
            if not deadlock or attempt == 2 or conn.in_transaction():
                raise
    raise AssertionError("unreachable")


def _jobs(rows: list[Any]) -> list[Job]:
    return [Job.from_record(row) for row in rows]


def database_identity(conn: SyncConn) -> tuple[Any, ...]:
    return qj.identity_of(conn.fetch(q.DATABASE_IDENTITY)[0])


def get_job(conn: SyncConn, job_id: int) -> Job | None:
    rows = conn.fetch(q.GET_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


def cancel_job(conn: SyncConn, job_id: int) -> Job | None:
    rows = conn.fetch(q.CANCEL_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


def retry_job(conn: SyncConn, job_id: int) -> Job | None:
    rows = conn.fetch(q.RETRY_JOB, job_id)
    return Job.from_record(rows[0]) if rows else None


def list_jobs(conn: SyncConn, job_filter: JobFilter, *, limit: int) -> list[Job]:
    """Jobs matching the filter, newest first (see `queries.list_jobs`)."""
    return [readable(row) for row in conn.fetch(q.LIST_JOBS, *job_filter.params(), None, limit)]


def retry_jobs(conn: SyncConn, job_filter: JobFilter, *, batch_size: int) -> list[int]:
    """Retry every matching job that is not executing, in bounded batches (see
    `queries.bulk_jobs`); the ids retried, in order."""
    changed: list[int] = []
    after_id = 0
    while True:
        row = conn.fetch(q.RETRY_JOBS, *job_filter.params(), after_id, batch_size)[0]
        changed += list(row["ids"])
        if int(row["scanned"]) < batch_size:
            return changed
        after_id = row["last_id"] or after_id


# --- control commands ---------------------------------------------------------------------


def status_nodes(conn: SyncConn) -> list[q.NodeRow]:
    return [qc.node_row(r) for r in conn.fetch(q.STATUS_NODES)]


def persisted_queues(conn: SyncConn) -> list[str]:
    return [r["name"] for r in conn.fetch(q.PERSISTED_QUEUES)]


def queue_has_jobs(conn: SyncConn, queue: str) -> bool:
    return bool(conn.fetch(q.QUEUE_HAS_JOBS, queue)[0]["found"])


def issue_control(
    conn: SyncConn,
    *,
    command: str,
    queue: str | None,
    node: str | None,
    payload: Mapping[str, Any],
    issued_by: str,
    persist: Mapping[str, Any] | None,
    history_s: float,
) -> int:
    """Insert a command (and the queue state it persists) in one transaction; its id."""
    conn.fetch("BEGIN")
    try:
        conn.fetch(q.PRUNE_CONTROL, history_s)
        rows = conn.fetch(q.INSERT_CONTROL, command, queue, node, json.dumps(payload), issued_by)
        if persist is not None:
            conn.fetch(
                q.PERSIST_QUEUE_STATE,
                persist["queue"],
                persist["paused"],
                persist["limit"],
                persist["reset_limit"],
            )
    except BaseException:
        conn.fetch("ROLLBACK")
        raise
    conn.fetch("COMMIT")
    return int(rows[0]["id"])


def control_targets(conn: SyncConn, control_id: int) -> list[str]:
    return [row["name"] for row in conn.fetch(q.CONTROL_TARGETS, control_id)]


def control_applied(conn: SyncConn, control_id: int) -> dict[str, dict[str, Any]]:
    rows = conn.fetch(q.CONTROL_APPLIED, control_id)
    return {row["node"]: json.loads(row["result"]) for row in rows}


# --- workflows, batches, chains (the parameters and results of `queries.workflows`) ------


def insert_workflow(conn: SyncConn, wf: Workflow) -> InsertedWorkflow:
    params = qw.workflow_params(wf)
    try:
        rows = conn.fetch(qw.INSERT_WORKFLOW, *params)
    except Exception as exc:
        refused = qw.refusal(exc.__cause__ or exc) or qw.refusal(exc)
        if refused is not None:
            raise refused from None
        raise
    return qw.workflow_result(wf, rows)


def insert_batch(
    conn: SyncConn, jobs: Sequence[NewJob], callbacks: dict[str, NewJob]
) -> InsertedBatch:
    return qw.batch_result(jobs, conn.fetch(qw.INSERT_BATCH, *qw.batch_params(jobs, callbacks)))


def insert_with_chains(conn: SyncConn, jobs: Sequence[NewJob]) -> list[Job]:
    """Chained and other jobs, on a connection inside a transaction (see
    `queries.workflows.insert_with_chains`)."""
    results: dict[int, Job] = {}
    for chain, indexes in qw.chain_groups(jobs):
        chained = [jobs[i] for i in indexes]
        rows = conn.fetch(qw.INSERT_CHAIN, *qw.chain_params(chain, chained))
        results.update(zip(indexes, qw.chain_result(chained, rows), strict=True))
    rest = [i for i in range(len(jobs)) if i not in results]
    if rest:
        results.update(zip(rest, insert_jobs(conn, [jobs[i] for i in rest]), strict=True))
    return [results[i] for i in range(len(jobs))]


def dep_results(conn: SyncConn, job_id: int) -> dict[str, Any]:
    return qw.dep_results_of(conn.fetch(qw.DEP_RESULTS, job_id))


def workflow_steps(conn: SyncConn, workflow_id: int) -> qw.WorkflowView | None:
    return qw.workflow_view(conn.fetch(qw.WORKFLOW_STEPS, workflow_id))


def cancel_workflow(conn: SyncConn, workflow_id: int) -> list[int]:
    return [row["id"] for row in conn.fetch(qw.CANCEL_WORKFLOW, workflow_id)]
