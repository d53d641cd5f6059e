"""`jobrunner jobs list|cancel|retry|delete` with the job filter, as an operator types them:
a bulk change asks first (or takes --yes), no filter needs --all, bad input changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import asyncpg

import jobrunner
from jobrunner import Job, worker
from tests.helpers import FAST_ENV, NO_CONFIG, ROOT


@worker(name="cli_bulk.mail", queue="mail")
async def mail(job: Job) -> None: ...


def cli(dsn: str, *args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAST_ENV, "JOBRUNNER_DATABASE_URL": dsn}
    env.pop("JOBRUNNER_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "jobrunner", *args, "--config", str(NO_CONFIG)],
        cwd=ROOT,
        env=env,
        input=answer if answer is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def snapshot(db: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await db.fetch("SELECT id, state::text FROM jobrunner_jobs ORDER BY id")
    return [(r["id"], r["state"]) for r in rows]


def refused(result: subprocess.CompletedProcess[str], message: str, code: int = 2) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


async def test_bulk_commands_by_filter(client: jobrunner.Client, db: asyncpg.Connection) -> None:
    sevens = await client.insert_all(
        [mail.new({"user_id": 7, "n": n}, tags=["a"]) for n in range(3)]
    )
    eights = await client.insert_all([mail.new({"user_id": 8}) for _ in range(2)])
    dsn = client.dsn

    listed = cli(dsn, "jobs", "list", "--args", '{"user_id": 7}', "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(j["id"] for j in json.loads(listed.stdout)) == [j.id for j in sevens]

    before = await snapshot(db)
    declined = cli(dsn, "jobs", "cancel", "--args", '{"user_id": 7}', answer="n\n")
    assert "cancel 3 jobs (args containing {'user_id': 7})? [y/N]" in declined.stdout
    refused(declined, "not confirmed, nothing changed", 1)
    assert await snapshot(db) == before

    done = cli(dsn, "jobs", "cancel", "--queue", "mail", "--args", '{"user_id": 7}', answer="y\n")
    assert done.returncode == 0, done.stderr
    ids = ", ".join(str(j.id) for j in sevens)
    assert done.stdout.endswith(
        f"cancelled 3 jobs (queue 'mail', args containing {{'user_id': 7}}): {ids}\n"
    )
    after = dict(await snapshot(db))
    assert [after[j.id] for j in sevens] == ["cancelled"] * 3
    assert [after[j.id] for j in eights] == ["available"] * 2

    retried = cli(dsn, "jobs", "retry", "--state", "cancelled", "--tag", "a", "--yes")
    assert retried.stdout == f"retried 3 jobs (state cancelled, tags a): {ids}\n"

    before = await snapshot(db)
    for args, message in [
        (["jobs", "cancel"], "cancel every job? give a filter (--state, --queue, ...), or --all"),
        (["jobs", "delete", "--yes"], "delete every job? give a filter"),
        (["jobs", "cancel", "--args", "[7]", "--yes"], "--args must be a JSON object"),
        (["jobs", "cancel", "--args", "{user: 7}", "--yes"], "--args is not valid JSON"),
        (
            ["jobs", "retry", "--inserted-after", "2026-01-01T00:00:00", "--yes"],
            "--inserted-after needs a time zone",
        ),
        (["jobs", "delete", "--inserted-before", "yesterday", "--yes"], "must be an ISO 8601"),
        (["jobs", "delete", "--state", "done", "--yes"], "unknown job state 'done'"),
        (["jobs", "list", "--user", "7"], "no such option: --user"),
        (["jobs", "cancel", "1", "--queue", "mail"], "give job ids or filters"),
    ]:
        refused(cli(dsn, *args), message)
    assert await snapshot(db) == before

    deleted = cli(dsn, "jobs", "delete", "--all", "--yes")
    assert deleted.returncode == 0 and deleted.stdout.startswith("deleted 5 jobs (every job)")
    assert await snapshot(db) == []


async def test_an_unknown_replace_field_in_an_app_is_one_line(
    client: jobrunner.Client, db: asyncpg.Connection
) -> None:
    result = cli(client.dsn, "enqueue", "bad.replace", "--app", "tests.apps.bad_replace")
    refused(result, "unknown unique replace field 'state'")
    assert await snapshot(db) == []
