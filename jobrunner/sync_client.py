"""The sync client: insert jobs and steer queues from scripts, Flask and Django views, on
psycopg 3 (a pool of its own, a psycopg_pool pool, or one connection), without an event loop."""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

from jobrunner import conn_kinds as _conns
from jobrunner.core.config import Settings
from jobrunner.core.errors import (
    InvalidConnection,
    InvalidFilter,
    InvalidJob,
    JobNotFound,
    JobRunnerError,
)
from jobrunner.core.job import Job
from jobrunner.core.job_filter import JobFilter, JobFilterArgs
from jobrunner.core.new_job import NewJob, validate_queue
from jobrunner.core.workflow import (
    InsertedBatch,
    InsertedWorkflow,
    Workflow,
    batch_callbacks,
    check_batch_jobs,
)
from jobrunner.daemon.control import PAUSE, RESUME, SCALE
from jobrunner.db import connection as _db
from jobrunner.db import queries as _queries
from jobrunner.db.queries import sync as sq
from jobrunner.ops import commands as _commands

if TYPE_CHECKING:
    from typing import Self

    from jobrunner.db.queries.workflows import WorkflowView
    from jobrunner.ops.commands import ControlResult

_NOT_CONNECTED = "the client is not connected; use 'with jobrunner.connect_sync()'"


BULK_BATCH_SIZE = 2_000  # jobs a bulk statement changes at most, as the async client's


class SyncClient:
    """jobrunner's client without asyncio. Use it as `with jobrunner.connect_sync(dsn)`.

    It has the async client's methods (insert, insert_all, insert_workflow, insert_batch,
    dep_results, get_workflow, cancel_workflow, get_job, list_jobs, cancel_job, retry_job,
    retry_jobs, pause_queue, resume_queue, scale_queue, reset_queue_limit),
    called without await; `conn=` takes the caller's psycopg connection, SQLAlchemy
    Session or Connection, or Django connection, to insert inside its transaction.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        settings: Settings | None = None,
        pool: Any = None,
        connection: Any = None,
    ) -> None:
        self.settings = settings or Settings.load(database_url=dsn)
        self._dsn = dsn or self.settings.database_url
        self._source = pool or connection
        self._owns_source = self._source is None
        self._identity: tuple[Any, ...] | None = None

    @property
    def dsn(self) -> str:
        """The resolved database URL (after `with`)."""
        if self._dsn is None:
            raise JobRunnerError(_NOT_CONNECTED)
        return self._dsn

    def __enter__(self) -> Self:
        return self.open()

    def open(self) -> Self:
        """Connect (what `with` does), for a client kept for the life of a process; `close()`
        ends it.

        Example:
            >>> jobs = jobrunner.connect_sync().open()   # at import of a Flask app
        """
        from jobrunner.db import migrate as _migrate
        from jobrunner.db import psycopg as _psycopg

        if self._source is not None and not self._owns_source:
            _check_source(self._source)
        if self._source is None:
            self._dsn = self._dsn or _db.embedded_dsn(self.settings.data_dir)
            self._source = _psycopg.create_pool(self._dsn, max_size=self.settings.pool_size)
        try:
            with _psycopg.borrowed(self._source) as conn:
                rows = conn.fetch(_migrate.SCHEMA_VERSION)
                _migrate.check_version(int(rows[0]["version"]))
                self._identity = sq.database_identity(conn)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._source is not None and self._owns_source:
            self._source.close()
            self._source = None

    def _conn(self) -> Any:
        from jobrunner.db import psycopg as _psycopg

        if self._source is None:
            raise JobRunnerError(_NOT_CONNECTED)
        return _psycopg.borrowed(self._source)

    def insert(self, job: NewJob, *, conn: Any = None) -> Job:
        """Insert one job; with `conn`, inside the caller's transaction (it commits with it).

        A unique job that conflicts returns the existing job with `conflict=True`.

        Example:
            >>> with jobrunner.connect_sync(dsn) as client:
            ...     job = client.insert(send_email.new({"user_id": 42}, schedule_in=60))
        """
        return self.insert_all([job], conn=conn)[0]

    def insert_all(self, jobs: Iterable[NewJob], *, conn: Any = None) -> list[Job]:
        """Insert many jobs in one statement, in order; see `insert`."""
        batch = list(jobs)
        for job in batch:
            if not isinstance(job, NewJob):
                raise InvalidJob(f"insert takes jobs built with worker.new(...), got {job!r}")
        if any(job.chain is not None for job in batch):
            return self._insert_chained(batch, conn)
        if conn is not None:
            target = _conns.sync_target(conn, self._identity)
            if all(job.unique is None for job in batch):
                return sq.insert_jobs(target, batch) if batch else []
            with self._conn() as own:  # unique keys released apart, committing at once
                return sq.insert_jobs(target, batch, release_on=own)
        if not batch:
            return []
        with self._conn() as own:
            return sq.insert_jobs(own, batch)

    def _insert_chained(self, batch: list[NewJob], conn: Any) -> list[Job]:
        if conn is not None:
            return sq.insert_with_chains(_conns.sync_target(conn, self._identity), batch)
        with self._conn() as own, own.raw.transaction():
            return sq.insert_with_chains(own, batch)

    def insert_workflow(self, wf: Workflow, *, conn: Any = None) -> InsertedWorkflow:
        """Insert every step of `wf` in one statement (see `Client.insert_workflow`)."""
        if not isinstance(wf, Workflow):
            raise InvalidJob(f"insert_workflow takes a jobrunner.Workflow, got {wf!r}")
        if conn is not None:
            return sq.insert_workflow(_conns.sync_target(conn, self._identity), wf)
        with self._conn() as own:
            return sq.insert_workflow(own, wf)

    def insert_batch(
        self,
        jobs: Iterable[NewJob],
        *,
        on_completed: NewJob | None = None,
        on_discarded: NewJob | None = None,
        on_exhausted: NewJob | None = None,
        conn: Any = None,
    ) -> InsertedBatch:
        """Insert `jobs` as a batch with its callbacks (see `Client.insert_batch`)."""
        batch = list(jobs)
        check_batch_jobs(batch)
        callbacks = batch_callbacks(on_completed, on_discarded, on_exhausted)
        if conn is not None:
            return sq.insert_batch(_conns.sync_target(conn, self._identity), batch, callbacks)
        with self._conn() as own:
            return sq.insert_batch(own, batch, callbacks)

    def dep_results(self, job: Job | int) -> dict[str, Any]:
        """What the deps of workflow step `job` recorded, by step name (see
        `Client.dep_results`)."""
        with self._conn() as conn:
            return sq.dep_results(conn, job.id if isinstance(job, Job) else job)

    def get_workflow(self, workflow_id: int) -> WorkflowView | None:
        """The workflow with this id and its steps, or None (see `Client.get_workflow`)."""
        with self._conn() as conn:
            return sq.workflow_steps(conn, workflow_id)

    def cancel_workflow(self, workflow_id: int) -> list[int]:
        """Cancel every unfinished step of the workflow (executing ones are stopped on
        their node); the ids cancelled. JobNotFound if there is no such workflow."""
        with self._conn() as conn:
            if sq.workflow_steps(conn, workflow_id) is None:
                raise JobNotFound(f"no workflow with id {workflow_id}")
            return sq.cancel_workflow(conn, workflow_id)

    def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None."""
        with self._conn() as conn:
            return sq.get_job(conn, job_id)

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a job that has not finished; an executing one is stopped on its node."""
        with self._conn() as conn:
            job = sq.cancel_job(conn, job_id)
        return job or self._existing(job_id)

    def retry_job(self, job_id: int) -> Job:
        """Run a job again now, whatever its state (except executing)."""
        with self._conn() as conn:
            job = sq.retry_job(conn, job_id)
        return job or self._existing(job_id)

    def _existing(self, job_id: int) -> Job:
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    def list_jobs(self, *, limit: int = 20, **filters: Unpack[JobFilterArgs]) -> list[Job]:
        """The newest jobs matching every filter given (the filters of `Client.list_jobs`)."""
        job_filter = JobFilter.from_mapping(filters)
        with self._conn() as conn:
            return sq.list_jobs(conn, job_filter, limit=limit)

    def retry_jobs(self, *, all_jobs: bool = False, **filters: Unpack[JobFilterArgs]) -> list[int]:
        """Run every matching job that is not executing again now; the ids retried (the
        filters of `Client.retry_jobs`; with none, refused unless `all_jobs=True`)."""
        job_filter = JobFilter.from_mapping(filters)
        if job_filter.empty and not all_jobs:
            raise InvalidFilter(
                "retry every job? give a filter, or all_jobs=True to mean every job"
            )
        with self._conn() as conn:
            return sq.retry_jobs(conn, job_filter, batch_size=BULK_BATCH_SIZE)

    def reset_tables(self) -> None:
        """Empty every jobrunner table but the migrations record (test isolation)."""
        with self._conn() as conn:
            conn.fetch(_queries.RESET_TABLES)

    # --- control: pause, resume, scale ---------------------------------------------------

    def pause_queue(
        self, queue: str, node: str | None = None, *, timeout_s: float = 5.0, force: bool = False
    ) -> ControlResult:
        """Stop fetching from `queue` on every node (persisted), or on `node`; see
        `Client.pause_queue`."""
        return self._issue(PAUSE, queue, node, {}, timeout_s=timeout_s, force=force)

    def resume_queue(
        self, queue: str, node: str | None = None, *, timeout_s: float = 5.0, force: bool = False
    ) -> ControlResult:
        """Fetch from `queue` again on every node (persisted), or on `node`."""
        return self._issue(RESUME, queue, node, {}, timeout_s=timeout_s, force=force)

    def scale_queue(
        self,
        queue: str,
        limit: int | None,
        node: str | None = None,
        *,
        timeout_s: float = 5.0,
        force: bool = False,
    ) -> ControlResult:
        """Run up to `limit` jobs of `queue` at once per node; None: `reset_queue_limit`."""
        if limit is not None:
            _commands.check_limit(limit)
        payload = {"limit": limit}
        return self._issue(SCALE, queue, node, payload, timeout_s=timeout_s, force=force)

    def reset_queue_limit(
        self, queue: str, node: str | None = None, *, timeout_s: float = 5.0, force: bool = False
    ) -> ControlResult:
        """Undo `scale_queue`: each node runs `queue` at the limit it was started with."""
        return self.scale_queue(queue, None, node, timeout_s=timeout_s, force=force)

    def _issue(
        self,
        command: str,
        queue: str,
        node: str | None,
        payload: dict[str, Any],
        *,
        timeout_s: float,
        force: bool,
    ) -> ControlResult:
        """Check the target, insert the command, wait for the nodes (`_commands.issue`)."""
        validate_queue(queue)
        with self._conn() as conn:
            self._check_target(conn, queue, node, force)
            persist = _commands.persisted_state(command, queue, node, payload)
            control_id = sq.issue_control(
                conn,
                command=command,
                queue=queue,
                node=node,
                payload=payload,
                issued_by=_commands.issuer(),
                persist=persist,
                history_s=_commands.CONTROL_HISTORY_S,
            )
            targets = tuple(sq.control_targets(conn, control_id))
            deadline = time.monotonic() + timeout_s
            while True:
                applied = sq.control_applied(conn, control_id)
                if set(targets) <= set(applied) or time.monotonic() >= deadline:
                    break
                time.sleep(_commands.POLL_S)  # polling to a deadline, as the async client does
        return _commands.ControlResult(
            control_id, command, queue, node, targets, applied, persist is not None
        )

    def _check_target(self, conn: Any, queue: str, node: str | None, force: bool) -> None:
        if node is not None:
            _commands.node_target(sq.status_nodes(conn), node, queue)
            return
        if force:
            return
        known = _commands.queues_known(
            sq.status_nodes(conn), sq.persisted_queues(conn), self.settings.queues
        )
        if queue not in known and not sq.queue_has_jobs(conn, queue):
            raise _commands.unknown_queue(queue, known)


def _check_source(source: Any) -> None:
    """A caller's connection for the client's own statements must be open and in autocommit:
    in a transaction, they would commit or roll back with it."""
    from jobrunner.db import psycopg as _psycopg

    if not isinstance(source, _psycopg.psycopg.Connection):
        return  # a psycopg_pool pool
    _psycopg.check_usable(source)
    if not source.autocommit:
        raise InvalidConnection(
            "connect_sync(connection=...) takes a connection in autocommit "
            "(psycopg.connect(dsn, autocommit=True)); to insert in a transaction, pass it "
            "as conn= to insert()"
        )


def connect_sync(
    dsn: str | None = None,
    *,
    settings: Settings | None = None,
    pool: Any = None,
    connection: Any = None,
) -> SyncClient:
    """A sync client for `dsn` (None: JOBRUNNER_DATABASE_URL, config file, else embedded).

    It opens a psycopg_pool pool of its own, or uses `pool` (a psycopg_pool ConnectionPool)
    or `connection` (one psycopg Connection in autocommit), which it then leaves open.

    Example:
        >>> with jobrunner.connect_sync("postgresql://localhost/app") as client:
        ...     client.insert(send_email.new({"user_id": 42}))
    """
    return SyncClient(dsn, settings=settings, pool=pool, connection=connection)
