"""The client: insert jobs, look them up, and steer queues (a running job's client, and a sync
job's `ThreadClient`, are in `thread_client`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Unpack

import asyncpg

from jobrunner import conn_kinds as _conns
from jobrunner.core import telemetry as _telemetry
from jobrunner.core.config import Settings, testing_override
from jobrunner.core.errors import InvalidFilter, InvalidJob, JobNotFound, JobRunnerError
from jobrunner.core.job import Job
from jobrunner.core.job_filter import JobFilter, JobFilterArgs
from jobrunner.core.new_job import NewJob
from jobrunner.db import connection as _db
from jobrunner.db import migrate as _migrate
from jobrunner.db import queries as _queries
from jobrunner.db.inserter import SMALL_BATCH, Inserter
from jobrunner.db.queries import workflows as _workflows
from jobrunner.workflow_client import WorkflowMethods

if TYPE_CHECKING:
    from typing import Self

    from jobrunner.ops.commands import ControlResult
    from jobrunner.ops.draining import DrainReport
    from jobrunner.ops.status import Status

TestingMode = Literal["inline", "manual"]

# Jobs changed per statement by cancel_jobs, retry_jobs and delete_jobs: each batch commits
# on its own, so none holds more row locks than this.
BULK_BATCH_SIZE = 2_000

_NOT_CONNECTED = "the client is not connected; use 'async with jobrunner.connect()'"


class Client(WorkflowMethods):
    """A connection pool to jobrunner's tables. Use it as `async with jobrunner.connect(dsn)`."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        settings: Settings | None = None,
        testing: TestingMode | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        if testing not in (None, "inline", "manual"):
            raise ValueError(f"testing must be 'inline', 'manual' or None, got {testing!r}")
        self.settings = settings or Settings.load(database_url=dsn)
        self._testing = testing
        self._dsn = dsn or self.settings.database_url
        self._pool = pool
        self._owns_pool = pool is None
        self._identity: tuple[Any, ...] | None = None
        self._inserter: Inserter | None = None

    @property
    def testing(self) -> TestingMode | None:
        """The testing mode: `with_testing_mode`'s, else `testing=`, else the `testing`
        setting (config file or JOBRUNNER_TESTING); None outside tests."""
        override = testing_override.get()
        if override is not None:
            return "inline" if override == "inline" else "manual"
        if self._testing is not None:
            return self._testing
        configured = self.settings.testing
        return "inline" if configured == "inline" else "manual" if configured else None

    @property
    def dsn(self) -> str:
        """The resolved database URL (after `async with`)."""
        if self._dsn is None:
            raise JobRunnerError(_NOT_CONNECTED)
        return self._dsn

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise JobRunnerError(_NOT_CONNECTED)
        return self._pool

    async def __aenter__(self) -> Self:
        self._dsn = await _db.resolve_dsn(self._dsn, self.settings.data_dir)
        if self._pool is None:
            self._pool = await _db.create_pool(
                self._dsn,
                max_size=self.settings.pool_size,
                acquire_timeout_s=self.settings.pool_timeout_s,
                reach=_db.Reach.of(self.settings),
            )
        try:
            async with self._pool.acquire() as conn:
                _db.check_reach(conn, self.settings.schema)
                await _migrate.verify(conn)
                self._identity = await _queries.database_identity(conn)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._inserter is not None:
            await self._inserter.close()
            self._inserter = None
        if self._pool is not None and self._owns_pool:
            await _db.close_pool(self._pool)
            self._pool = None

    async def insert(self, job: NewJob, *, conn: Any = None) -> Job:
        """Insert one job; with `conn`, inside the caller's transaction (it commits with it).

        A unique job that conflicts returns the existing job with `conflict=True`.

        Example:
            >>> job = await client.insert(send_email.new({"user_id": 42}, schedule_in=60))
        """
        return (await self.insert_all([job], conn=conn))[0]

    async def insert_all(self, jobs: Iterable[NewJob], *, conn: Any = None) -> list[Job]:
        """Insert many jobs in one statement, in order; see `insert`."""
        batch = list(jobs)
        for job in batch:
            if not isinstance(job, NewJob):
                raise InvalidJob(f"insert takes jobs built with worker.new(...), got {job!r}")
        target = (
            self.pool
            if conn is None
            else await _conns.async_target(conn, self._identity, self.settings.schema)
        )
        if not batch:
            return []
        tracer = _telemetry.insert_tracer
        insert: Any = partial(
            _queries.insert_jobs, target, release_on=None if conn is None else self.pool
        )
        if any(job.chain is not None for job in batch):
            insert = partial(_workflows.insert_with_chains, target)
        elif (
            conn is None
            and isinstance(target, asyncpg.Pool)  # not a test's one-connection view
            and len(batch) <= SMALL_BATCH
            and all(job.unique is None for job in batch)
        ):
            insert = self._plain_inserter().insert  # a held connection, grouped statements
        inserted = await (tracer(insert, batch) if tracer is not None else insert(batch))
        if self.testing == "inline":
            from jobrunner.engine.drain import run_inline

            caller = None if conn is None else target
            if any(job.chain is not None for job in batch):
                return await self._run_inline_until_settled(inserted, caller)
            return await run_inline(self, inserted, caller)
        return inserted

    def _plain_inserter(self) -> Inserter:
        if self._inserter is None:
            self._inserter = Inserter(self.pool)
        return self._inserter

    async def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        return await _queries.get_job(self.pool, job_id)

    async def cancel_job(self, job_id: int) -> Job:
        """Cancel a job that has not finished; an executing one is stopped on its node."""
        job = await _queries.cancel_job(self.pool, job_id)
        return job or await self._existing(job_id)

    async def retry_job(self, job_id: int) -> Job:
        """Run a job again now, whatever its state (except executing)."""
        job = await _queries.retry_job(self.pool, job_id)
        return job or await self._existing(job_id)

    async def _existing(self, job_id: int) -> Job:
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    # --- control: pause, resume, scale, stop, drain; the operator's queries ---------------

    async def pause_queue(
        self, queue: str, node: str | None = None, *, timeout_s: float = 5.0, force: bool = False
    ) -> ControlResult:
        """Stop fetching from `queue` (running jobs finish) on every node, or on `node`.

        Aimed at every node, the pause is persisted: nodes that start later stay paused
        until `resume_queue`. Waits up to `timeout_s` seconds for the live nodes serving the
        queue to apply it; the result says which did. An unknown queue raises unless `force`.

        Example:
            >>> result = await client.pause_queue("emails")
            >>> result.ok, sorted(result.applied)
        """
        from jobrunner.ops import commands as _commands

        return await _commands.pause(self, queue, node, timeout_s=timeout_s, force=force)

    async def resume_queue(
        self, queue: str, node: str | None = None, *, timeout_s: float = 5.0, force: bool = False
    ) -> ControlResult:
        """Fetch from `queue` again on every node (persisted), or on `node`; see pause_queue."""
        from jobrunner.ops import commands as _commands

        return await _commands.resume(self, queue, node, timeout_s=timeout_s, force=force)

    async def scale_queue(
        self,
        queue: str,
        limit: int | None,
        node: str | None = None,
        *,
        timeout_s: float = 5.0,
        force: bool = False,
    ) -> ControlResult:
        """Run up to `limit` jobs of `queue` at once per node; scaling down lets running jobs
        finish. Aimed at every node, the limit is persisted for nodes that start later.
        None: see `reset_queue_limit`.

        Example:
            >>> await client.scale_queue("emails", 50)
        """
        from jobrunner.ops import commands as _commands

        return await _commands.scale(self, queue, limit, node, timeout_s=timeout_s, force=force)

    async def scale_global(
        self,
        queue: str,
        global_limit: int | None,
        *,
        timeout_s: float = 5.0,
        force: bool = False,
    ) -> ControlResult:
        """Run at most `global_limit` jobs of `queue` at once across every node (per partition
        for a partitioned queue); persisted, and it wins over the nodes' `global_limit`.
        None: back to the configured one.

        Example:
            >>> await client.scale_global("payments", 5)
        """
        from jobrunner.ops import commands as _commands

        return await _commands.scale_global(
            self, queue, global_limit, timeout_s=timeout_s, force=force
        )

    async def reset_queue_limit(
        self,
        queue: str,
        node: str | None = None,
        *,
        timeout_s: float = 5.0,
        force: bool = False,
    ) -> ControlResult:
        """Undo `scale_queue`: each node runs `queue` at the limit it was started with again.

        Aimed at every node, the persisted limit is forgotten too, so nodes that start later
        use their own configuration.

        Example:
            >>> await client.reset_queue_limit("emails")
        """
        from jobrunner.ops import commands as _commands

        return await _commands.scale(self, queue, None, node, timeout_s=timeout_s, force=force)

    async def stop_node(
        self, node: str | None = None, *, grace_s: float | None = None, timeout_s: float = 5.0
    ) -> ControlResult:
        """Stop `node` (None: every live node) gracefully: running jobs get `grace_s` seconds
        (None: the node's shutdown_grace_s). Returns once the nodes applied the command."""
        from jobrunner.ops import commands as _commands

        return await _commands.stop(self, node, grace_s=grace_s, timeout_s=timeout_s)

    async def drain(
        self,
        queues: Sequence[str] | None = None,
        *,
        with_scheduled: bool = False,
        timeout_s: float | None = None,
        force: bool = False,
    ) -> DrainReport:
        """Run every waiting job of `queues` (None: every queue) until none is left.

        Live nodes serving a queue run its jobs; queues no live node serves (unpaused) run
        here, so their workers must be imported. `with_scheduled` runs scheduled and
        retryable jobs now too (failed jobs are retried until they succeed or run out of
        attempts). The queues drain together, jobs those jobs enqueue included, and a queue
        whose last serving node stops meanwhile is drained here. `force` accepts a queue
        nothing knows of yet. Raises DrainTimeout after `timeout_s` seconds.

        Example:
            >>> report = await client.drain(["emails"])
            >>> report.ok, report.counts()
        """
        from jobrunner.ops import draining as _draining

        return await _draining.drain(
            self, queues, with_scheduled=with_scheduled, timeout_s=timeout_s, force=force
        )

    async def list_jobs(self, *, limit: int = 20, **filters: Unpack[JobFilterArgs]) -> list[Job]:
        """The newest jobs matching every filter given.

        Filters: `state` (one state or several), `queue`, `worker`, `tags` (all must be on the
        job), `args` (contained in the job's args, PostgreSQL's `@>`), `args_text` (a
        substring of the args' JSON text), `inserted_after` and `inserted_before`
        (timezone-aware datetimes). A bad or unknown filter raises InvalidFilter.

        Example:
            >>> await client.list_jobs(state="discarded", args={"user_id": 7}, limit=100)
        """
        job_filter = JobFilter.from_mapping(filters)
        return await _queries.list_jobs(self.pool, job_filter, limit=limit)

    async def cancel_jobs(
        self, *, all_jobs: bool = False, **filters: Unpack[JobFilterArgs]
    ) -> list[int]:
        """Cancel every unfinished job matching the filters (see `list_jobs`); the ids
        cancelled. Executing ones are stopped on their nodes, as by `cancel_job`. With no
        filter at all, refused unless `all_jobs=True`.

        Example:
            >>> await client.cancel_jobs(queue="emails", args={"user_id": 7})
        """
        return await self._bulk("cancel", JobFilter.from_mapping(filters), all_jobs)

    async def retry_jobs(
        self, *, all_jobs: bool = False, **filters: Unpack[JobFilterArgs]
    ) -> list[int]:
        """Run every matching job that is not executing again now (one more attempt if it
        has none left); the ids retried. Filters as for `cancel_jobs`.

        Example:
            >>> await client.retry_jobs(state="discarded", worker="app.send")
        """
        job_filter = JobFilter.from_mapping(filters)
        if job_filter.states is not None and "executing" in job_filter.states:
            raise InvalidFilter("executing jobs cannot be retried; cancel them first")
        return await self._bulk("retry", job_filter, all_jobs)

    async def delete_jobs(
        self, *, all_jobs: bool = False, **filters: Unpack[JobFilterArgs]
    ) -> list[int]:
        """Delete every matching job that is not executing; the ids deleted. Filters as for
        `cancel_jobs`.

        Example:
            >>> await client.delete_jobs(state="completed", queue="emails")
        """
        return await self._bulk("delete", JobFilter.from_mapping(filters), all_jobs)

    async def delete_job(self, job_id: int) -> bool:
        """Delete a job that is not executing; False if it is executing. Raises JobNotFound."""
        if await _queries.delete_job(self.pool, job_id):
            return True
        await self._existing(job_id)
        return False

    async def _bulk(self, action: str, job_filter: JobFilter, all_jobs: bool) -> list[int]:
        if job_filter.empty and not all_jobs:
            raise InvalidFilter(
                f"{action} every job? give a filter, or all_jobs=True to mean every job"
            )
        return await _queries.bulk_jobs(
            self.pool, job_filter, action=action, batch_size=BULK_BATCH_SIZE
        )

    async def status(self) -> Status:
        """Nodes, their queues, and job counts by queue and state (`jobrunner status`)."""
        from jobrunner.ops import status as _status

        return await _status.status(self)


def connect(
    dsn: str | None = None,
    *,
    testing: TestingMode | None = None,
    settings: Settings | None = None,
    pool: asyncpg.Pool | None = None,
) -> Client:
    """A client for `dsn` (None: JOBRUNNER_DATABASE_URL, config file, else embedded).

    Example:
        >>> async with jobrunner.connect("postgresql://localhost/app") as client:
        ...     await client.insert(send_email.new({"user_id": 42}))
    """
    return Client(dsn, settings=settings, testing=testing, pool=pool)
