"""jobrunner: background jobs in PostgreSQL, run by an asyncio daemon.

Example:
    >>> import jobrunner
    >>> from jobrunner import Job, worker
    >>> @worker(queue="emails", max_attempts=5)
    ... async def send_email(job: Job) -> None: ...
    >>> async with jobrunner.connect(dsn) as client:
    ...     await client.insert(send_email.new({"user_id": 42}))
"""

from jobrunner.client import Client, connect
from jobrunner.core.config import CronEntry, QueueConfig, Settings
from jobrunner.core.errors import (
    ConfigError,
    DatabaseUnavailable,
    InvalidConnection,
    InvalidFilter,
    InvalidJob,
    JobNotFound,
    JobRunnerError,
    MigrationError,
    MissingExtra,
    SchemaMissing,
    SchemaOutdated,
    UnknownWorker,
)
from jobrunner.core.job import Cancel, Discard, Job, JobError, JobState, Record, Snooze
from jobrunner.core.new_job import NewJob, Unique
from jobrunner.core.telemetry import subscribe
from jobrunner.core.worker import Worker, worker
from jobrunner.core.workflow import InsertedBatch, InsertedWorkflow, InvalidWorkflow, Workflow
from jobrunner.daemon.runner import Runner
from jobrunner.sync_client import SyncClient, connect_sync
from jobrunner.thread_client import ThreadClient, current_client

__all__ = [
    "Cancel",
    "Client",
    "ConfigError",
    "CronEntry",
    "DatabaseUnavailable",
    "Discard",
    "InsertedBatch",
    "InsertedWorkflow",
    "InvalidConnection",
    "InvalidFilter",
    "InvalidJob",
    "InvalidWorkflow",
    "Job",
    "JobError",
    "JobNotFound",
    "JobRunnerError",
    "JobState",
    "MigrationError",
    "MissingExtra",
    "NewJob",
    "QueueConfig",
    "Record",
    "Runner",
    "SchemaMissing",
    "SchemaOutdated",
    "Settings",
    "Snooze",
    "SyncClient",
    "ThreadClient",
    "Unique",
    "UnknownWorker",
    "Worker",
    "Workflow",
    "connect",
    "connect_sync",
    "current_client",
    "subscribe",
    "worker",
]

__version__ = "0.1.0"
