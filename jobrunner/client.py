"""The client: insert jobs, look them up, and steer queues."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from . import _db, _migrate, _queries
from .config import Settings
from .errors import InvalidJob, JobNotFound, JobRunnerError
from .job import Job
from .worker import NewJob

if TYPE_CHECKING:
    from typing import Self

TestingMode = Literal["inline", "manual"]

_NOT_CONNECTED = "the client is not connected; use 'async with jobrunner.connect()'"

_current: contextvars.ContextVar[Client] = contextvars.ContextVar("jobrunner_client")


def current_client() -> Client:
    """The client running the current job, to enqueue follow-up jobs from a worker.

    Example:
        >>> @worker()
        ... async def step_one(job: Job) -> None:
        ...     await jobrunner.current_client().insert(step_two.new(job.args))
    """
    try:
        return _current.get()
    except LookupError:
        raise JobRunnerError("current_client() is only available inside a running job") from None


class Client:
    """A connection pool to jobrunner's tables. Use it as `async with jobrunner.connect(dsn)`."""

    def __init__(self, dsn: str | None = None, *, settings: Settings | None = None,
                 testing: TestingMode | None = None, pool: asyncpg.Pool | None = None) -> None:
        if testing not in (None, "inline", "manual"):
            raise ValueError(f"testing must be 'inline', 'manual' or None, got {testing!r}")
        self.settings = settings or Settings.load(database_url=dsn)
        self.testing = testing
        self._dsn = dsn or self.settings.database_url
        self._pool = pool
        self._owns_pool = pool is None

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
            self._pool = await _db.create_pool(self._dsn, max_size=self.settings.pool_size)
        try:
            async with self._pool.acquire() as conn:
                await _migrate.verify(conn)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
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
        if not batch:
            return []
        inserted = await _queries.insert_jobs(conn or self.pool, batch)
        if self.testing == "inline":
            from ._executor import run_inline

            return await run_inline(self, inserted, conn)
        return inserted

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


def connect(dsn: str | None = None, *, testing: TestingMode | None = None,
            settings: Settings | None = None, pool: asyncpg.Pool | None = None) -> Client:
    """A client for `dsn` (None: JOBRUNNER_DATABASE_URL, config file, else embedded).

    Example:
        >>> async with jobrunner.connect("postgresql://localhost/app") as client:
        ...     await client.insert(send_email.new({"user_id": 42}))
    """
    return Client(dsn, settings=settings, testing=testing, pool=pool)
