"""A running job's client: `current_client()`, and `ThreadClient`, the same calls from a sync
job's thread."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar, cast

from jobrunner.client import Client
from jobrunner.core import threads as _threads
from jobrunner.core.errors import JobRunnerError
from jobrunner.core.job import Job
from jobrunner.core.new_job import NewJob
from jobrunner.core.workflow import InsertedBatch, InsertedWorkflow, Workflow
from jobrunner.engine.executor import CURRENT_CLIENT

_T = TypeVar("_T")


def current_client() -> Client:
    """The client running the current job, to enqueue follow-up jobs from a worker.

    Inside a sync worker (a plain `def`, in a thread) it returns a `ThreadClient` instead:
    the same methods without `await` (`ThreadClient.current()` says so to a type checker).

    Example:
        >>> @worker()
        ... async def step_one(job: Job) -> None:
        ...     await jobrunner.current_client().insert(step_two.new(job.args))
    """
    try:
        client = cast(Client, CURRENT_CLIENT.get())
    except LookupError:
        raise JobRunnerError("current_client() is only available inside a running job") from None
    loop = _threads.job_loop()
    if loop is not None:
        return ThreadClient(client, loop)  # type: ignore[return-value]
    return client


class ThreadClient:
    """The running client as a sync job's thread sees it: its calls run on the runner's
    event loop and block the thread (never the loop) until they are done.

    Example:
        >>> @worker(queue="images")
        ... def resize(job: Job) -> None:
        ...     ...
        ...     jobrunner.ThreadClient.current().insert(publish.new({"id": job.args["id"]}))
    """

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self._loop = loop

    @classmethod
    def current(cls) -> ThreadClient:
        """The client running the current sync job, from its thread."""
        found = current_client()
        if not isinstance(found, ThreadClient):
            raise JobRunnerError(
                "ThreadClient.current() is only available inside a sync job's thread; "
                "an async job uses current_client()"
            )
        return found

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` (made from `self.client`, say) on the runner's loop; its result.

        Example:
            >>> tc = jobrunner.ThreadClient.current()
            >>> tc.call(tc.client.retry_job(42))
        """
        if _threads.job_loop() is None and _on_loop(self._loop):
            coro.close()
            raise JobRunnerError("a ThreadClient is for a sync job's thread, not the event loop")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise JobRunnerError("the runner that ran this job has stopped") from None
        return future.result()

    def insert(self, job: NewJob) -> Job:
        """Insert one job (see `Client.insert`)."""
        return self.call(self.client.insert(job))

    def insert_all(self, jobs: Iterable[NewJob]) -> list[Job]:
        """Insert many jobs in one statement (see `Client.insert_all`)."""
        return self.call(self.client.insert_all(list(jobs)))

    def get_job(self, job_id: int) -> Job | None:
        """The job with this id, or None (see `Client.get_job`)."""
        return self.call(self.client.get_job(job_id))

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a job (see `Client.cancel_job`)."""
        return self.call(self.client.cancel_job(job_id))

    def insert_workflow(self, wf: Workflow) -> InsertedWorkflow:
        """Insert a workflow's steps (see `Client.insert_workflow`)."""
        return self.call(self.client.insert_workflow(wf))

    def insert_batch(self, jobs: Iterable[NewJob], **callbacks: NewJob | None) -> InsertedBatch:
        """Insert a batch (see `Client.insert_batch`)."""
        return self.call(self.client.insert_batch(list(jobs), **callbacks))

    def dep_results(self, job: Job | int) -> dict[str, Any]:
        """The results a step's deps recorded (see `Client.dep_results`)."""
        return self.call(self.client.dep_results(job))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from `loop`'s own thread (waiting there would deadlock)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
