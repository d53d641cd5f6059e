"""Workers whose outcomes PostgreSQL cannot store as they are, beside a healthy one."""

from __future__ import annotations

from jobrunner import Job, Snooze, worker


@worker(queue="iso_bad", name="iso.nul")
async def nul(job: Job) -> None:
    raise ValueError("abc\x00def")


@worker(queue="iso_bad", name="iso.surrogate")
async def surrogate(job: Job) -> None:
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # as os.listdir() gives it
    raise FileNotFoundError(f"no such file: {name}")


@worker(queue="iso_bad", name="iso.snooze_inf")
async def snooze_inf(job: Job) -> Snooze:
    return Snooze(float("inf"))


@worker(queue="iso_good", name="iso.ok")
async def ok(job: Job) -> None:
    return None
