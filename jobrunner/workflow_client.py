"""The client's methods for workflows, batches and recorded results (`Client` has them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import asyncpg

from jobrunner import conn_kinds as _conns
from jobrunner.core.errors import InvalidJob, JobNotFound
from jobrunner.core.job import Job
from jobrunner.core.new_job import NewJob
from jobrunner.core.workflow import (
    InsertedBatch,
    InsertedWorkflow,
    Workflow,
    batch_callbacks,
    check_batch_jobs,
)
from jobrunner.db.queries import workflows as _workflows

if TYPE_CHECKING:
    from jobrunner.db.connection import Connected as Client
    from jobrunner.db.queries.workflows import WorkflowView


class WorkflowMethods:
    """Workflows (jobs that wait on others), batches (callbacks when a group ends) and what
    workflow steps recorded. Mixed into `Client`, which provides the pool."""

    _identity: tuple[Any, ...] | None

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    @property
    def testing(self) -> str | None:
        raise NotImplementedError

    async def insert_workflow(self, wf: Workflow, *, conn: Any = None) -> InsertedWorkflow:
        """Insert every step of `wf` in one transaction (with `conn`, the caller's).

        A cycle or a dep naming no step raises InvalidWorkflow before anything is written.

        Example:
            >>> run = await client.insert_workflow(wf)
            >>> run.id, run.jobs["load"].state
        """
        if not isinstance(wf, Workflow):
            raise InvalidJob(f"insert_workflow takes a jobrunner.Workflow, got {wf!r}")
        target = self.pool if conn is None else await _conns.async_target(conn, self._identity)
        run = await _workflows.insert_workflow(target, wf)
        if self.testing == "inline":
            await self._run_inline_until_settled(list(run.jobs.values()), conn)
        return run

    async def insert_batch(
        self,
        jobs: Iterable[NewJob],
        *,
        on_completed: NewJob | None = None,
        on_discarded: NewJob | None = None,
        on_exhausted: NewJob | None = None,
        conn: Any = None,
    ) -> InsertedBatch:
        """Insert `jobs` as a batch, in one statement; each callback job is inserted once,
        when the batch's last job finishes and its condition holds: `on_completed` (every
        job completed), `on_discarded` (one or more discarded), `on_exhausted` (always).
        A callback's meta carries `batch_id` and `batch_callback`.

        Example:
            >>> await client.insert_batch([resize.new({"id": i}) for i in ids],
            ...                           on_completed=publish.new({"album": 7}))
        """
        batch = list(jobs)
        check_batch_jobs(batch)
        callbacks = batch_callbacks(on_completed, on_discarded, on_exhausted)
        target = self.pool if conn is None else await _conns.async_target(conn, self._identity)
        inserted = await _workflows.insert_batch(target, batch, callbacks)
        if self.testing == "inline":
            await self._run_inline_until_settled(inserted.jobs, conn)
            # The callbacks the batch's end inserted run too, as a daemon would run them.
            due = await _workflows.batch_callbacks(self.pool, inserted.id)
            if due:
                await self._run_inline_until_settled(due, conn)
        return inserted

    async def dep_results(self, job: Job | int) -> dict[str, Any]:
        """What the deps of workflow step `job` recorded (`Record`), by step name; a dep
        that recorded nothing maps to None. Call it from the step's worker.

        Example:
            >>> totals = await jobrunner.current_client().dep_results(job)
            >>> sum(r["rows"] for r in totals.values())
        """
        return await _workflows.dep_results(self.pool, job.id if isinstance(job, Job) else job)

    async def get_workflow(self, workflow_id: int) -> WorkflowView | None:
        """The workflow with this id and its steps, or None."""
        return await _workflows.workflow_steps(self.pool, workflow_id)

    async def cancel_workflow(self, workflow_id: int) -> list[int]:
        """Cancel every unfinished step of the workflow (executing ones are stopped on
        their node); the ids cancelled. JobNotFound if there is no such workflow."""
        if await self.get_workflow(workflow_id) is None:
            raise JobNotFound(f"no workflow with id {workflow_id}")
        return await _workflows.cancel_workflow(self.pool, workflow_id)

    async def _run_inline_until_settled(self, jobs: list[Job], conn: Any) -> list[Job]:
        """Testing inline mode: run the jobs, then those they released (workflow steps,
        chained jobs), until none runs; the jobs as they ended."""
        from jobrunner.engine.drain import run_inline

        while True:
            ended = await run_inline(cast("Client", self), jobs, conn)
            if [j.state for j in ended] == [j.state for j in jobs]:
                return ended
            jobs = ended
