"""Per-environment settings from the Oban guides: testing modes that keep a Runner from
running jobs, queues that start paused (a persisted resume wins), tags and meta on cron."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import jobrunner
from jobrunner import ConfigError, CronEntry, Job, JobState, QueueConfig, Settings, worker
from jobrunner.plugins import cron
from jobrunner.plugins.cron import Cron
from jobrunner.testing import with_testing_mode
from tests.apps import sched_workers  # noqa: F401 - registers sched.tick
from tests.helpers import eventually

QUEUE = "config_guides"
ran: list[int] = []


@worker(queue=QUEUE, name="config_guides.note")
async def note(job: Job) -> None:
    ran.append(job.id)


def with_testing(settings: Settings, mode: str | None) -> Settings:
    return dataclasses.replace(settings, testing=mode)


@pytest.mark.parametrize("mode", ["manual", "inline"])
async def test_a_runner_in_a_testing_mode_runs_no_queue_and_no_plugin(
    settings: Settings, db: asyncpg.Connection, mode: str
) -> None:
    ran.clear()
    configured = with_testing(settings, mode)
    async with jobrunner.connect(settings=configured) as client:
        assert client.testing == mode
        async with jobrunner.Runner(client, {QUEUE: 5}) as runner:
            assert runner.producers == {} and runner.leader is None
            job = await client.insert(note.new({}, schedule_in=0.01))
            nodes = await db.fetchval("SELECT count(*) FROM jobrunner_nodes")
        stored = await client.get_job(job.id)
    assert nodes == 0 and stored is not None
    if mode == "manual":  # nothing ran it: neither a queue nor the stager
        assert stored.state is JobState.SCHEDULED and ran == []
    else:  # inline: run at insert, by the inserting task (scheduled jobs too, as in Oban)
        assert stored.state is JobState.COMPLETED and ran == [job.id]


def test_testing_comes_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "jobrunner.toml"
    path.write_text('testing = "manual"\n[queues]\nmail = { limit = 10, paused = true }\n')
    loaded = Settings.load(config=path, env={})
    assert loaded.testing == "manual"
    assert loaded.queues["mail"] == QueueConfig(limit=10, paused=True)
    assert Settings.load(config=path, env={"JOBRUNNER_TESTING": "inline"}).testing == "inline"
    with pytest.raises(ConfigError, match="testing must be 'inline' or 'manual', got 'auto'"):
        Settings.load(env={"JOBRUNNER_TESTING": "auto"})
    path.write_text("[queues]\nmail = { paused = 'yes' }\n")
    with pytest.raises(ConfigError, match="queue 'mail' paused must be true or false"):
        Settings.load(config=path, env={})


async def test_with_testing_mode_switches_every_client_for_a_block(
    client: jobrunner.Client, settings: Settings
) -> None:
    ran.clear()
    assert client.testing is None
    with with_testing_mode("inline"):
        assert client.testing == "inline"
        job = await client.insert(note.new({}))
        async with jobrunner.Runner(client, {QUEUE: 1}) as runner:
            assert runner.producers == {}
    assert job.state is JobState.COMPLETED and ran == [job.id]
    assert client.testing is None
    with with_testing_mode("manual"):
        waiting = await client.insert(note.new({}))
    assert waiting.state is JobState.AVAILABLE and ran == [job.id]
    with pytest.raises(ValueError, match="testing mode must be 'inline' or 'manual'"):
        with with_testing_mode("off"):  # type: ignore[arg-type]
            pass


async def test_a_queue_configured_paused_starts_paused_until_a_persisted_resume(
    client: jobrunner.Client, make_runner
) -> None:
    ran.clear()
    paused = {QUEUE: QueueConfig(limit=2, paused=True)}
    async with make_runner(queues=paused) as runner:
        assert runner.producers[QUEUE].paused
        job = await client.insert(note.new({}))
        await client.scale_queue(QUEUE, 3)  # persists a limit, decides nothing on pausing
    async with make_runner(queues=paused) as runner:
        assert runner.producers[QUEUE].paused and runner.producers[QUEUE].limit == 3
        result = await client.resume_queue(QUEUE)
        assert result.ok and result.persisted
        await eventually(lambda: _ran(job.id))
    async with make_runner(queues=paused) as runner:  # the persisted resume wins
        assert not runner.producers[QUEUE].paused
    await client.pause_queue(QUEUE)
    async with make_runner(queues={QUEUE: 2}) as runner:  # a persisted pause wins too
        assert runner.producers[QUEUE].paused


async def _ran(job_id: int) -> bool:
    return job_id in ran


async def test_cron_entries_take_tags_and_meta(client: jobrunner.Client) -> None:
    entry = CronEntry(
        "0 * * * *",
        "sched.tick",
        name="tagged",
        tags=["maintenance"],
        meta={"owner": "ops", "cron": "not this"},
    )
    at = datetime(2030, 1, 1, 12, 0, 0, 300_000, tzinfo=UTC)

    async def now() -> datetime:
        return at

    plugin = Cron(client.pool, cron.parse_all([entry]), now=now, interval_s=1.0, grace_s=5.0)
    assert await plugin._tick() == []
    at += timedelta(hours=1)
    [job] = await plugin._tick()
    assert job.tags == ("maintenance",)
    assert job.meta == {"owner": "ops", "cron": "tagged", "cron_slot": "2030-01-01T13:00:00+00:00"}
    with pytest.raises(ConfigError, match="crontab entry 'bad' meta must be a JSON object"):
        cron.parse_all([CronEntry("0 * * * *", "sched.tick", name="bad", meta=[1])])  # type: ignore[arg-type]


def test_cron_tags_and_meta_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "jobrunner.toml"
    path.write_text(
        '[[crontab]]\nschedule = "0 * * * *"\nworker = "sched.tick"\n'
        'tags = ["maintenance"]\nmeta = { owner = "ops" }\n'
    )
    [entry] = Settings.load(config=path, env={}).crontab
    assert entry.tags == ("maintenance",) and entry.meta == {"owner": "ops"}
    assert asyncio.iscoroutinefunction(note.perform)
