"""An app module where two workers claim one name, as a copy-pasted `name=` would."""

from __future__ import annotations

from jobrunner import Job, worker


@worker(name="emails.send")
async def send_welcome(job: Job) -> None:
    return None


@worker(name="emails.send")
async def send_receipt(job: Job) -> None:
    return None
