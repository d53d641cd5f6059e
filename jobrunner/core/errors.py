"""The one exception hierarchy of jobrunner."""

from __future__ import annotations


class JobRunnerError(Exception):
    """jobrunner failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(JobRunnerError):
    """invalid configuration."""


class InvalidJob(JobRunnerError, ValueError):
    """invalid job."""


class UnknownWorker(JobRunnerError, LookupError):
    """unknown worker."""


class DatabaseUnavailable(JobRunnerError):
    """the database is unreachable, check the database url."""


class SchemaMissing(JobRunnerError):
    """jobrunner tables missing, run 'jobrunner migrate'."""


class SchemaOutdated(JobRunnerError):
    """the jobrunner schema is outdated, run 'jobrunner migrate'."""


class MigrationError(JobRunnerError):
    """a migration failed."""


class JobNotFound(JobRunnerError, LookupError):
    """no such job."""


class PoolTimeout(JobRunnerError, TimeoutError):
    """no pooled connection came free in time."""


class InvalidConnection(JobRunnerError, TypeError):
    """this connection cannot take jobrunner's statements."""


class MissingExtra(JobRunnerError, ImportError):
    """an optional dependency is missing."""
