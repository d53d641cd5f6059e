"""Behind a real PgBouncer in transaction-pool mode: the daemon, the CLI and the client work
through it, with a direct `listen_url` and without one (polling)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import jobrunner
from jobrunner import JobState, Unique
from jobrunner._bench_pgbouncer import PgBouncer
from jobrunner.core.config import Settings
from tests.apps import sample
from tests.apps.sample import RECORD_TABLE
from tests.conftest import create_database, server_dsn
from tests.helpers import Daemon, eventually, run_cli

APP = "tests.apps.sample"
CRONTAB = (
    '[[crontab]]\nschedule = "* * * * * *"\nworker = "sample.record"\nargs = { cron = true }\n'
)


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    started = PgBouncer(server_dsn()).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def direct(worker_suffix: str) -> AsyncIterator[str]:
    """A fresh database of its own, migrated later through the pooler by the test."""
    url = await create_database(f"jobrunner_test_{worker_suffix}_pgb")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(RECORD_TABLE)
    finally:
        await conn.close()
    yield url


def database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def cli(*args: str, dsn: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, dsn=dsn, env=env)
    assert "prepared statement" not in result.stderr
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("listen", [True, False], ids=["listen_url", "polling"])
async def test_everything_works_through_pgbouncer(
    bouncer: PgBouncer, direct: str, tmp_path: Path, listen: bool
) -> None:
    via = bouncer.dsn(database(direct))
    config = tmp_path / "jobrunner.toml"
    config.write_text(CRONTAB)
    env = {
        "JOBRUNNER_PGBOUNCER": "true",
        "JOBRUNNER_POLL_INTERVAL_S": "0.2",
        "JOBRUNNER_CONFIG": str(config),
    }
    if listen:
        env["JOBRUNNER_LISTEN_URL"] = direct
    assert "applied 0001_initial" in ok(cli("migrate", dsn=via, env=env))
    daemon = Daemon(via, queues="default:4", app=(APP,), env=env).start()
    try:
        await daemon.wait_ready()
        settings = Settings(database_url=via, pgbouncer=True)
        async with jobrunner.connect(settings=settings) as client:
            await _run_jobs(client, via, env)
            await _unique_and_retry(client, via, env)
            await _cron_ran(client)
            await _control(client, via, env)
    finally:
        assert await daemon.stop() == 0
    logs = daemon.output()
    assert "prepared statement" not in logs and "prepared statement" not in bouncer.output()
    assert "unsupported startup parameter" not in bouncer.output()
    polling = daemon.events("notifier.polling")
    assert len(polling) == (0 if listen else 1), logs
    if not listen:
        assert polling[0]["poll_interval_s"] == 0.2


async def _run_jobs(client: jobrunner.Client, via: str, env: dict[str, str]) -> None:
    out = ok(cli("enqueue", "sample.record", "--args", '{"n": 0}', "--app", APP, dsn=via, env=env))
    assert "enqueued job" in out
    jobs = await asyncio.gather(
        *(client.insert(sample.record_run.new({"n": i})) for i in range(20))
    )
    await _wait_state(client, [j.id for j in jobs], JobState.COMPLETED)


async def _unique_and_retry(client: jobrunner.Client, via: str, env: dict[str, str]) -> None:
    unique = Unique(period=None, keys=["k"])
    first, second = await asyncio.gather(
        client.insert(sample.noop.new({"k": 1}, unique=unique, schedule_in=3600)),
        client.insert(sample.noop.new({"k": 1}, unique=unique, schedule_in=3600)),
    )
    assert first.id == second.id and sorted([first.conflict, second.conflict]) == [False, True]
    failing = await client.insert(sample.fail.new({}))
    await _wait_state(client, [failing.id], JobState.RETRYABLE)
    ok(cli("jobs", "retry", str(failing.id), dsn=via, env=env))

    async def second_attempt() -> bool:
        job = await client.get_job(failing.id)
        assert job.attempt == 2 and job.state is JobState.RETRYABLE, job
        return True

    await eventually(second_attempt, 20)


async def _cron_ran(client: jobrunner.Client) -> None:
    async def inserted() -> bool:
        found = await client.list_jobs(args={"cron": True}, state="completed", limit=1)
        assert found, "no cron job completed"
        return True

    await eventually(inserted, 20)


async def _control(client: jobrunner.Client, via: str, env: dict[str, str]) -> None:
    ok(cli("pause", "default", dsn=via, env=env))
    ok(cli("scale", "default", "2", dsn=via, env=env))
    queue = _queue(ok(cli("status", "--json", dsn=via, env=env)))
    assert queue["paused"] is True and queue["limit"] == 2, queue
    held = await client.insert(sample.record_run.new({"held": True}))
    ok(cli("resume", "default", dsn=via, env=env))
    await _wait_state(client, [held.id], JobState.COMPLETED)
    for i in range(3):
        await client.insert(sample.record_run.new({"drained": i}))
    assert "completed" in ok(cli("drain", "default", dsn=via, env=env))
    assert _queue(ok(cli("status", "--json", dsn=via, env=env)))["paused"] is False


def _queue(status_out: str) -> dict[str, object]:
    queues = {q["name"]: q for q in json.loads(status_out)["queues"]}
    return queues["default"]  # type: ignore[no-any-return]


async def _wait_state(
    client: jobrunner.Client, ids: list[int], state: JobState, timeout_s: float = 30
) -> None:
    async def check() -> bool:
        states = [(await client.get_job(i)).state for i in ids]
        assert states == [state] * len(ids), states
        return True

    await eventually(check, timeout_s)


async def test_an_unreachable_listen_url_is_one_line_and_polling(
    bouncer: PgBouncer, direct: str
) -> None:
    via = bouncer.dsn(database(direct))
    env = {
        "JOBRUNNER_PGBOUNCER": "true",
        "JOBRUNNER_POLL_INTERVAL_S": "0.2",
        "JOBRUNNER_LISTEN_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
    }
    ok(cli("migrate", dsn=via, env=env))
    daemon = Daemon(via, app=(APP,), env=env).start()
    try:
        await daemon.wait_ready()
        async with jobrunner.connect(settings=Settings(database_url=via, pgbouncer=True)) as c:
            job = await c.insert(sample.record_run.new({}))
            await _wait_state(c, [job.id], JobState.COMPLETED)
    finally:
        assert await daemon.stop() == 0
    assert len(daemon.events("notifier.listen_url_unavailable")) == 1, daemon.output()
    assert daemon.events("notifier.connect_failed") == [], daemon.output()
    assert "Traceback" not in daemon.output()


@pytest.mark.parametrize("target", ["direct", "session_pooler"])
async def test_pgbouncer_mode_works_on_a_direct_server_or_a_session_pooler(
    direct: str, target: str
) -> None:
    # A session pooler holds a server connection per client: room for all of them.
    session = None
    if target == "session_pooler":
        session = PgBouncer(server_dsn(), pool_mode="session", pool_size=40).start()
    try:
        url = direct if session is None else session.dsn(database(direct))
        env = {"JOBRUNNER_PGBOUNCER": "true", "JOBRUNNER_POLL_INTERVAL_S": "0.2"}
        ok(cli("migrate", dsn=url, env=env))
        daemon = Daemon(url, app=(APP,), env=env).start()
        try:
            await daemon.wait_ready()
            async with jobrunner.connect(settings=Settings(database_url=url, pgbouncer=True)) as c:
                job = await c.insert(sample.record_run.new({}))
                await _wait_state(c, [job.id], JobState.COMPLETED)
                ok(cli("pause", "default", dsn=url, env=env))
                assert _queue(ok(cli("status", "--json", dsn=url, env=env)))["paused"] is True
        finally:
            assert await daemon.stop() == 0
        assert len(daemon.events("notifier.polling")) == 1
    finally:
        if session is not None:
            session.stop()
