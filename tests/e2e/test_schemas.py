"""`schema = "..."`: two instances in two schemas of one database never see each other's jobs,
control commands or notifications; migrations for another tool (`migrate --sql | --check`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState
from jobrunner.core.config import Settings
from jobrunner.db import migrate as _migrate
from tests.apps import sample
from tests.apps.sample import RECORD_TABLE
from tests.conftest import create_database
from tests.helpers import NO_CONFIG, Daemon, eventually, run_cli

APP = "tests.apps.sample"


@pytest.fixture
async def url(worker_suffix: str) -> AsyncIterator[str]:
    created = await create_database(f"jobrunner_test_{worker_suffix}_schemas")
    conn = await asyncpg.connect(created)
    try:
        await conn.execute(RECORD_TABLE)
    finally:
        await conn.close()
    yield created


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(NO_CONFIG), dsn=url)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    return lines[0]


def status(url: str, schema: str) -> dict[str, object]:
    result = run_cli("--schema", schema, "status", "--json", dsn=url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


async def test_two_instances_in_two_schemas_run_side_by_side(url: str) -> None:
    for schema in ("alpha", "beta"):
        assert run_cli("--schema", schema, "migrate", dsn=url).returncode == 0
    daemons = {s: Daemon(url, schema=s, app=(APP,)).start() for s in ("alpha", "beta")}
    try:
        for daemon in daemons.values():
            await daemon.wait_ready()
        await _jobs_stay_apart(url, daemons)
        await _notifications_stay_apart(url)
        assert cli(url, "--schema", "alpha", "pause", "default").returncode == 0
        for schema, daemon in daemons.items():
            nodes = status(url, schema)["nodes"]
            assert [n["name"] for n in nodes] == [daemon.node]  # type: ignore[index]
            paused = nodes[0]["queues"]["default"]["paused"]  # type: ignore[index]
            assert paused is (schema == "alpha"), (schema, nodes)
    finally:
        for daemon in daemons.values():
            assert await daemon.stop() == 0


async def _jobs_stay_apart(url: str, daemons: dict[str, Daemon]) -> None:
    ids: dict[str, list[int]] = {}
    for schema in daemons:
        async with jobrunner.connect(settings=Settings(database_url=url, schema=schema)) as c:
            jobs = await c.insert_all([sample.record_run.new({"i": i}) for i in range(5)])
            ids[schema] = [j.id for j in jobs]

            async def done(c: jobrunner.Client = c, mine: list[int] = ids[schema]) -> bool:
                states = {(await c.get_job(i)).state for i in mine}
                assert states == {JobState.COMPLETED}, states
                return True

            await eventually(done, 20)
    conn = await asyncpg.connect(url)
    try:
        for schema, daemon in daemons.items():
            ran = await conn.fetch(
                "SELECT job_id FROM test_executions WHERE node = $1", daemon.node
            )
            assert sorted(r["job_id"] for r in ran) == ids[schema]
    finally:
        await conn.close()


async def _notifications_stay_apart(url: str) -> None:
    heard: dict[str, list[str]] = {}
    conn = await asyncpg.connect(url)
    try:
        for channel in ("jobrunner_insert", "alpha.jobrunner_insert", "beta.jobrunner_insert"):
            heard[channel] = []
            await conn.add_listener(channel, lambda _c, _p, ch, payload: heard[ch].append(payload))
        async with jobrunner.connect(settings=Settings(database_url=url, schema="beta")) as c:
            await c.insert(sample.noop.new({}, queue="quiet"))

        async def delivered() -> bool:
            assert heard["beta.jobrunner_insert"] == ["quiet"], heard
            return True

        await eventually(delivered, 10)
        await conn.execute("SELECT 1")  # a round trip: anything else sent is delivered by now
        assert heard["alpha.jobrunner_insert"] == [] and heard["jobrunner_insert"] == []
    finally:
        await conn.close()


async def test_migrate_sql_is_what_another_tool_applies(url: str) -> None:
    check = run_cli("--schema", "gamma", "migrate", "--check", dsn=url)
    assert f"is at version 0, this jobrunner needs {_migrate.LATEST}" in one_error_line(check)
    script = run_cli("migrate", "--sql", "--schema", "gamma", dsn=url)
    assert script.returncode == 0 and 'CREATE TABLE "gamma".jobrunner_jobs' in script.stdout
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():  # as Alembic's op.execute or a Flyway file runs it
            await conn.execute(script.stdout)
        assert run_cli("migrate", "--check", "--schema", "gamma", dsn=url).returncode == 0
        assert run_cli("migrate", "--sql", "--schema", "gamma", dsn=url).stdout == ""
        public = await conn.fetchval("SELECT to_regclass('public.jobrunner_jobs')")
        assert public is None  # nothing outside the schema
        await conn.execute(
            "DELETE FROM gamma.jobrunner_migrations WHERE version = $1", _migrate.LATEST
        )
    finally:
        await conn.close()
    refused = cli(url, "start", "--schema", "gamma", "--app", APP)
    assert one_error_line(refused) == (
        f"error: the jobrunner schema 'gamma' is at version {_migrate.available()[-2].version} "
        "but this "
        f"jobrunner needs {_migrate.LATEST}, run 'jobrunner --schema gamma migrate'"
    )


@pytest.mark.parametrize("name", ["Jobs", "x; drop table t", "1jobs", "a" * 40, ""])
def test_a_schema_that_is_not_an_identifier_is_one_line(url: str, name: str) -> None:
    for args in (["--schema", name, "migrate"], ["start", "--schema", name, "--app", APP]):
        line = one_error_line(cli(url, *args))
        assert line.startswith("error: schema must be"), line
