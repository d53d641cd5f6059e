"""An app module whose worker names a field unique replace does not know."""

from __future__ import annotations

from jobrunner import Job, Unique, worker


@worker(name="bad.replace", unique=Unique(period=None, replace=["scheduled_at", "state"]))
async def bad_replace(job: Job) -> None: ...
