"""Inserting jobs: plain ones in one statement, unique ones in rounds (a plan that the sync
client runs too)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Generator, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg

from jobrunner.core.errors import JobRunnerError
from jobrunner.core.job import _STATES, Job, inserted, new_inserted_job
from jobrunner.core.new_job import NewJob
from jobrunner.db.queries.jobs import Conn, _fetch, _sql

INSERT_JOBS = _sql("insert_jobs")
INSERT_PLAIN_JOB = _sql("insert_plain_job")
INSERT_PLAIN_JOBS = _sql("insert_plain_jobs")
FIND_UNIQUE_JOBS = _sql("find_unique_jobs")
RELEASE_UNIQUE_KEYS = _sql("release_unique_keys")


def unique_key(job: NewJob) -> str | None:
    """The key a unique job holds in the unique index: a digest of its fingerprint."""
    fingerprint = job.fingerprint()
    if fingerprint is None:
        return None
    return "u:" + hashlib.sha256(fingerprint.encode()).hexdigest()


_INSERT_ROUNDS = 5


async def insert_jobs(
    conn: Conn, jobs: Sequence[NewJob], *, release_on: Conn | None = None
) -> list[Job]:
    """Insert `jobs` in one statement; a unique conflict returns the existing job.

    The result is in the order of `jobs`, conflicts marked `conflict=True` (a replaced job
    with its new values). A conflicting job that left its unique states before it could be
    looked up no longer blocks: those jobs are inserted again. Duplicates within `jobs` that
    replace go in turn, each in a statement of its own after the one before it. With
    `release_on` (when `conn` is the caller's transaction),
    the unique keys the insert replaces are released there first, in a statement that
    commits at once, so that the caller's transaction never holds an executing job's row.
    """
    if all(job.unique is None for job in jobs):
        if len(jobs) == 1:
            return [await insert_plain_job(conn, jobs[0])]
        return await insert_plain_jobs(conn, jobs)
    plan = unique_insert_plan(jobs, release_apart=release_on is not None)
    query, args = next(plan)
    while True:
        if query is INSERT_JOBS:
            rows = await _insert_statement(conn, args)
        else:
            rows = await _fetch(
                release_on or conn if query is RELEASE_UNIQUE_KEYS else conn, query, *args
            )
        try:
            query, args = plan.send(rows)
        except StopIteration as done:
            result: list[Job] = done.value
            return result


# What a unique insert asks the database (statement, parameters) and is given back (rows):
# the same plan runs on an async connection (insert_jobs) and a sync one (queries.sync).
InsertPlan = Generator[tuple[str, tuple[Any, ...]], list[Any], list[Job]]


def unique_insert_plan(jobs: Sequence[NewJob], *, release_apart: bool = False) -> InsertPlan:
    """The rounds of a batch with unique jobs: insert, look up the conflicts, insert again the
    ones whose conflicting job was released meanwhile.

    With `release_apart` (the insert runs in the caller's transaction), each round first asks
    for RELEASE_UNIQUE_KEYS, which the driver runs on a connection of its own that commits at
    once: released in the caller's transaction, an executing job's row would stay locked until
    that transaction ends, and the job's outcome would wait for it."""
    keys = [unique_key(job) for job in jobs]
    results: dict[int, Job] = {}
    for wave in _waves(jobs, keys):
        todo = wave
        for _ in range(_INSERT_ROUNDS):
            batch = [jobs[i] for i in todo]
            columns = _columns(batch, [keys[i] for i in todo])
            if release_apart:
                yield RELEASE_UNIQUE_KEYS, columns[-3:]
            replaces = [j.unique.replace_json() if j.unique else None for j in batch]
            rows = yield INSERT_JOBS, (*columns, not release_apart, replaces)
            conflicts = _round_results(rows, todo, results)
            if conflicts:
                rows = yield FIND_UNIQUE_JOBS, (list(set(conflicts.values())),)
                found = {row["unique_key"]: Job.from_record(row) for row in rows}
                for index, key in conflicts.items():
                    if key in found:
                        results[index] = replace(found[key], conflict=True)
            todo = [i for i in todo if i not in results]
            if not todo:
                break
        else:
            raise JobRunnerError(
                "unique jobs kept conflicting with jobs that were released at once; "
                "insert them again"
            )
    return [results[i] for i in range(len(jobs))]


def _waves(jobs: Sequence[NewJob], keys: Sequence[str | None]) -> list[list[int]]:
    """The jobs' indexes in statements to run in turn: the n-th job of a key that replaces
    goes in the n-th; every other job in the first."""
    waves: list[list[int]] = [[]]
    seen: dict[str, int] = {}
    for index, (job, key) in enumerate(zip(jobs, keys, strict=True)):
        wave = 0
        if key is not None and job.unique is not None and job.unique.replace is not None:
            wave = seen[key] = seen.get(key, -1) + 1
            if wave == len(waves):
                waves.append([])
        waves[wave].append(index)
    return waves


async def release_unique_keys(
    conn: Conn, jobs: Sequence[NewJob], keys: Sequence[str | None]
) -> None:
    """Release, in a statement of its own, the unique keys that inserting `jobs` would (the
    step `unique_insert_plan` asks for with `release_apart`)."""
    await _fetch(conn, RELEASE_UNIQUE_KEYS, *_columns(jobs, keys)[-3:])


def _round_results(rows: list[Any], todo: Sequence[int], results: dict[int, Job]) -> dict[int, str]:
    """Put the jobs a round inserted into `results`; return the conflicting ones' keys."""
    conflicts: dict[int, str] = {}
    by_key: dict[str, Job] = {}
    for row in rows:
        index = todo[row["ord"] - 1]
        if row["id"] is None:
            conflicts[index] = row["held_key"]
            continue
        job = Job.from_record(row, conflict=row["replaced"])
        results[index] = job
        if job.unique_key is not None:
            by_key[job.unique_key] = job
    for index, key in list(conflicts.items()):
        if key in by_key:  # a duplicate within the batch
            results[index] = replace(by_key[key], conflict=True)
            del conflicts[index]
    return conflicts


async def _insert_statement(conn: Conn, columns: tuple[Any, ...]) -> list[Any]:
    """Run INSERT_JOBS; a deadlock between concurrent inserts is retried outside transactions."""
    for attempt in range(3):
        try:
            return await _fetch(conn, INSERT_JOBS, *columns)
        except asyncpg.DeadlockDetectedError:
            in_transaction = getattr(conn, "is_in_transaction", None)
            if attempt == 2 or (in_transaction is not None and in_transaction()):
                raise
    raise AssertionError("unreachable")


def plain_job_params(job: NewJob) -> tuple[tuple[Any, ...], str, str]:
    """INSERT_PLAIN_JOB's parameters for `job`, and its encoded args and meta."""
    args, meta = job.encoded_args(), job.encoded_meta()
    params = (
        job.worker,
        job.queue,
        args,
        meta,
        list(job.tags),
        job.priority,
        job.max_attempts,
        job.scheduled_at,
        job.schedule_in,
    )
    return params, args, meta


def plain_job_result(job: NewJob, args: str, meta: str, row: Any) -> Job:
    """The job INSERT_PLAIN_JOB inserted, from its one row."""
    job_id, state, inserted_at, scheduled_at = row[:4]
    return inserted(_new_job(job, args, meta), job_id, _STATES[state], inserted_at, scheduled_at)


async def insert_plain_job(conn: Conn, job: NewJob) -> Job:
    """Insert one job that is not unique."""
    params, args, meta = plain_job_params(job)
    rows = await _fetch(conn, INSERT_PLAIN_JOB, *params)
    return plain_job_result(job, args, meta, rows[0])


def plain_jobs_params(jobs: Sequence[NewJob]) -> tuple[tuple[Any, ...], list[str], list[str]]:
    """INSERT_PLAIN_JOBS's parameters for `jobs`, and their encoded args and metas (one per
    job). A column whose jobs all share one value is sent as that value alone."""
    args = [j.encoded_args() for j in jobs]
    metas = _one_or_all([j.encoded_meta() for j in jobs])
    params = (
        _one_or_all([j.worker for j in jobs]),
        _one_or_all([j.queue for j in jobs]),
        args,
        metas,
        _one_or_all([_tags_json(j) for j in jobs]),
        _one_or_all([j.priority for j in jobs]),
        _one_or_all([j.max_attempts for j in jobs]),
        _all_or_none([j.scheduled_at for j in jobs]),
        _all_or_none([j.schedule_in for j in jobs]),
    )
    return params, args, metas * len(jobs) if len(metas) == 1 else metas


def plain_jobs_result(built: Sequence[Job], row: Any) -> list[Job]:
    """The jobs INSERT_PLAIN_JOBS inserted: `built` (see _new_job) with what its one row says."""
    ids, states, scheduled_ats, inserted_at = row
    if ids != sorted(ids):  # the arrays are in id order in practice, but need not be
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, states = [ids[i] for i in order], [states[i] for i in order]
        scheduled_ats = [scheduled_ats[i] for i in order]
    return [
        inserted(job, job_id, _STATES[state], inserted_at, at if at is not None else inserted_at)
        for job, job_id, state, at in zip(built, ids, states, scheduled_ats, strict=True)
    ]


async def insert_plain_jobs(conn: Conn, jobs: Sequence[NewJob]) -> list[Job]:
    """Insert jobs that are not unique in one statement; the result is in the order of `jobs`.

    The jobs are built while the database inserts them (their ids, states and times are set
    once it has).
    """
    params, args, metas = plain_jobs_params(jobs)
    query = asyncio.ensure_future(_fetch(conn, INSERT_PLAIN_JOBS, *params))
    try:
        built: list[Job] = []
        for start in range(0, len(jobs), _BUILD_CHUNK):
            await asyncio.sleep(0)  # the statement goes out (once prepared, the first time)
            end = start + _BUILD_CHUNK
            built += map(_new_job, jobs[start:end], args[start:end], metas[start:end])
        rows = await query
    except BaseException:
        query.cancel()
        raise
    return plain_jobs_result(built, rows[0])


# Jobs built between two looks at the connection while insert_plain_jobs waits for the database.
_BUILD_CHUNK = 1_000


def _tags_json(job: NewJob) -> str:
    """A job's tags as the JSON array the insert statements take."""
    return json.dumps(list(job.tags)) if job.tags else "[]"


def _one_or_all(values: list[Any]) -> list[Any]:
    """`values`, or its one value if they are all the same (see insert_plain_jobs.sql)."""
    return values[:1] if values.count(values[0]) == len(values) else values


def _all_or_none(values: list[Any]) -> list[Any]:
    """`values`, or none if they are all None (see insert_plain_jobs.sql)."""
    return [] if values.count(None) == len(values) else values


def _new_job(job: NewJob, args: str, meta: str) -> Job:
    """The Job that `get_job` will return for `job`, but for what the database decides; args
    and meta are decoded from the text stored."""
    return new_inserted_job(
        job.queue,
        job.worker,
        _stored_json(args),
        {} if meta == "{}" else _stored_json(meta),
        tuple(job.tags),
        job.max_attempts,
        job.priority,
    )


def _jsonb_float(text: str) -> float | int:
    """The value json.loads gives for the number `text` once stored as jsonb: jsonb keeps a
    number as numeric and writes it in full, so '1e+16' reads back as the integer."""
    mantissa, exponent_mark, exponent = text.lower().partition("e")
    if exponent_mark and int(exponent) >= len(mantissa.partition(".")[2]):
        return int(Decimal(text))
    return float(text)


_STORED_JSON = json.JSONDecoder(parse_float=_jsonb_float)


def _stored_json(text: str) -> Any:
    """json.loads of what jsonb gives back for the JSON `text` (one value, no whitespace)."""
    return _STORED_JSON.raw_decode(text)[0]


async def find_unique_jobs(conn: Conn, keys: Sequence[str]) -> dict[str, Job]:
    """The jobs holding these unique keys now, by key."""
    rows = await _fetch(conn, FIND_UNIQUE_JOBS, list(keys))
    return {row["unique_key"]: Job.from_record(row) for row in rows}


def job_columns(jobs: Sequence[NewJob]) -> tuple[list[Any], ...]:
    """The statement parameters every insert of jobs takes, a list per column: worker,
    queue, args, meta, tags, priority, max_attempts, scheduled_at, schedule_in."""
    return (
        [j.worker for j in jobs],
        [j.queue for j in jobs],
        [j.encoded_args() for j in jobs],
        [j.encoded_meta() for j in jobs],
        [_tags_json(j) for j in jobs],
        [j.priority for j in jobs],
        [j.max_attempts for j in jobs],
        [j.scheduled_at for j in jobs],
        [j.schedule_in for j in jobs],
    )


def _columns(jobs: Sequence[NewJob], keys: Sequence[str | None]) -> tuple[list[Any], ...]:
    return (
        *job_columns(jobs),
        list(keys),
        ["{" + ",".join(j.unique.states) + "}" if j.unique else None for j in jobs],
        [j.unique.period if j.unique else None for j in jobs],
    )
