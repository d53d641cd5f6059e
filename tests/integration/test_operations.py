"""Operator commands against an in-process runner: a pause racing a claim, an embedded stop."""

from __future__ import annotations

import asyncio

import asyncpg

import jobrunner
from jobrunner import Job, JobState, worker
from tests.helpers import eventually, run_cli

GATE_KEY = 7_420_001

# A claim (available -> executing) waits on an advisory lock the test holds: a slow claim.
SLOW_CLAIM = f"""
CREATE OR REPLACE FUNCTION test_slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'available' AND NEW.state = 'executing' AND NEW.queue = 'paused_race' THEN
        PERFORM pg_advisory_lock_shared({GATE_KEY});
        PERFORM pg_advisory_unlock_shared({GATE_KEY});
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS test_slow_claim ON jobrunner_jobs;
CREATE TRIGGER test_slow_claim BEFORE UPDATE ON jobrunner_jobs
FOR EACH ROW EXECUTE FUNCTION test_slow_claim();
"""

started: list[int] = []


@worker(queue="paused_race", name="operations.race")
async def race(job: Job) -> None:
    started.append(job.id)


async def test_a_pause_racing_a_slow_claim_starts_no_job_after_its_confirmation(
    make_runner, client: jobrunner.Client, db: asyncpg.Connection
):
    started.clear()
    await db.execute(SLOW_CLAIM)
    try:
        async with make_runner(queues={"paused_race": 5}) as runner:
            producer = runner.producers["paused_race"]
            await db.execute("SELECT pg_advisory_lock($1)", GATE_KEY)
            jobs = await client.insert_all([race.new({"n": n}) for n in range(3)])

            async def claim_waiting() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND objid = $1 AND NOT granted",
                        GATE_KEY,
                    )
                )

            await eventually(claim_waiting)
            pausing = asyncio.create_task(client.pause_queue("paused_race"))
            await eventually(lambda: asyncio.sleep(0, producer.paused))
            await db.execute("SELECT pg_advisory_unlock($1)", GATE_KEY)
            result = await asyncio.wait_for(pausing, 30)
            assert result.ok and result.applied[runner.node]["running"] == 0

            async def fetch_over() -> bool:
                return not producer._fetches and not await claim_waiting()

            await eventually(fetch_over)
            for job in jobs:
                after = await client.get_job(job.id)
                assert after.state is JobState.AVAILABLE and after.attempt == 0, after
            assert started == [] and producer.running == 0

            await client.resume_queue("paused_race")

            async def all_ran() -> bool:
                return sorted(started) == sorted(job.id for job in jobs)

            await eventually(all_ran)
    finally:
        await db.execute("SELECT pg_advisory_unlock_all()")
        await db.execute("DROP TRIGGER IF EXISTS test_slow_claim ON jobrunner_jobs")


async def test_jobrunner_stop_stops_an_embedded_runner(make_runner, client: jobrunner.Client):
    async with make_runner(queues={"default": 2}, node="embedded-1") as runner:
        stopped = await asyncio.to_thread(
            run_cli, "stop", "--node", "embedded-1", "--grace", "1", dsn=client.dsn
        )
        assert stopped.returncode == 0, stopped.stderr
        await asyncio.wait_for(runner.stopped.wait(), 30)
        assert runner.stop_requested.is_set() and runner.requested_grace_s == 1
        nodes = await client.pool.fetchval(
            "SELECT count(*) FROM jobrunner_nodes WHERE name = 'embedded-1'"
        )
        assert nodes == 0


holding = asyncio.Event()


@worker(queue="drain_cancel", name="operations.hold")
async def hold(job: Job) -> None:
    holding.set()
    await asyncio.Event().wait()  # runs until stopped


async def test_a_job_cancelled_while_drain_queue_runs_it_stops(client: jobrunner.Client):
    from jobrunner.testing import drain_queue

    holding.clear()
    job = await client.insert(hold.new({}))
    draining = asyncio.create_task(drain_queue(client, "drain_cancel"))
    await asyncio.wait_for(holding.wait(), 10)
    await client.cancel_job(job.id)
    result = await asyncio.wait_for(draining, 10)
    assert result.as_dict() == {
        "completed": 0,
        "failure": 0,
        "snoozed": 0,
        "cancelled": 1,
        "discarded": 0,
    }
    assert (await client.get_job(job.id)).state is JobState.CANCELLED
