"""The schema itself: constraints that refuse impossible jobs whoever writes them, and indexes
that keep the hot statements off the finished rows however many there are."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import NewJob, Unique


def plan_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    found: list[dict[str, Any]] = []
    stack = [json.loads(plan)[0]["Plan"]]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", []))
    return found


@pytest.fixture
async def many_finished(db: asyncpg.Connection) -> asyncpg.Connection:
    """100,000 finished jobs, a few waiting ones, and fresh statistics."""
    await db.execute(
        "INSERT INTO jobrunner_jobs (state, worker, queue, completed_at, scheduled_at) "
        "SELECT 'completed', 'old.work', 'hot', now(), now() - interval '1 day' "
        "FROM generate_series(1, 100000)"
    )
    await db.execute(
        "INSERT INTO jobrunner_jobs (state, worker, queue, priority) "
        "SELECT 'available', 'new.work', 'hot', g % 10 FROM generate_series(1, 50) g"
    )
    await db.execute("ANALYZE jobrunner_jobs")
    return db


async def test_next_jobs_of_a_queue_come_from_the_partial_index(
    many_finished: asyncpg.Connection,
) -> None:
    plan = await many_finished.fetchval(
        "EXPLAIN (FORMAT JSON) SELECT id FROM jobrunner_jobs "
        "WHERE state = 'available' AND queue = $1 "
        "ORDER BY priority, scheduled_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
        "hot",
        10,
    )
    nodes = plan_nodes(plan)
    assert any(n.get("Index Name") == "jobrunner_jobs_fetch_idx" for n in nodes), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), nodes
    assert not any(n["Node Type"] == "Sort" for n in nodes), nodes  # the index is the order
    size = await many_finished.fetchval(
        "SELECT pg_relation_size('jobrunner_jobs_fetch_idx') / current_setting('block_size')::int"
    )
    assert size < 10  # pages: it holds the 50 waiting jobs, not the 100,000 finished ones


async def test_unique_inserts_look_keys_up_by_index(
    client: jobrunner.Client, many_finished: asyncpg.Connection
) -> None:
    job = await client.insert(NewJob(worker="u", args={"a": 1}, unique=Unique(period=60)))
    await many_finished.execute("ANALYZE jobrunner_jobs")
    plan = await many_finished.fetchval(
        "EXPLAIN (FORMAT JSON) SELECT id FROM jobrunner_jobs WHERE unique_key = ANY($1::text[])",
        [job.unique_key],
    )
    nodes = plan_nodes(plan)
    assert any(n.get("Index Name") == "jobrunner_jobs_unique_idx" for n in nodes), nodes
    again = await client.insert(NewJob(worker="u", args={"a": 1}, unique=Unique(period=60)))
    assert again.conflict and again.id == job.id


@pytest.mark.parametrize(
    ("columns", "values", "constraint"),
    [
        ("worker, priority", "'w', 10", "jobrunner_jobs_priority_range"),
        ("worker, priority", "'w', -1", "jobrunner_jobs_priority_range"),
        ("worker, max_attempts", "'w', 0", "jobrunner_jobs_attempts_positive"),
        ("worker, queue", "'w', ''", "jobrunner_jobs_queue_length"),
        ("worker", "''", "jobrunner_jobs_worker_length"),
        ("worker, args", "'w', '[1, 2]'", "jobrunner_jobs_args_object"),
        ("worker, meta", "'w', '\"text\"'", "jobrunner_jobs_meta_object"),
    ],
)
async def test_constraints_refuse_impossible_jobs(
    db: asyncpg.Connection, columns: str, values: str, constraint: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute(f"INSERT INTO jobrunner_jobs ({columns}) VALUES ({values})")
    assert caught.value.constraint_name == constraint


async def test_a_job_left_in_its_unique_states_keeps_its_key(db: asyncpg.Connection) -> None:
    """The trigger releases a key only when the job leaves its unique states."""
    job_id = await db.fetchval(
        "INSERT INTO jobrunner_jobs (worker, unique_key, unique_states) "
        "VALUES ('w', 'k1', '{available,executing}') RETURNING id"
    )
    await db.execute("UPDATE jobrunner_jobs SET state = 'executing' WHERE id = $1", job_id)
    assert await db.fetchval("SELECT unique_key FROM jobrunner_jobs WHERE id = $1", job_id) == "k1"
    await db.execute("UPDATE jobrunner_jobs SET state = 'completed' WHERE id = $1", job_id)
    assert await db.fetchval("SELECT unique_key FROM jobrunner_jobs WHERE id = $1", job_id) is None
    await db.execute("UPDATE jobrunner_jobs SET state = 'available' WHERE id = $1", job_id)
    assert await db.fetchval("SELECT unique_key FROM jobrunner_jobs WHERE id = $1", job_id) is None


async def test_the_jobs_table_has_only_the_indexes_its_statements_use(
    db: asyncpg.Connection,
) -> None:
    """Each index costs every insert and every change of state an entry (no update of state is
    HOT), so there is none for the operator's listings by worker: they scan newest first.
    The workflow, chain, batch and partition indexes are partial: a plain job has no entry in
    them."""
    names = await db.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'jobrunner_jobs' ORDER BY 1"
    )
    assert [r["indexname"] for r in names] == [
        "jobrunner_jobs_batch_idx",
        "jobrunner_jobs_chain_idx",
        "jobrunner_jobs_executing_idx",
        "jobrunner_jobs_fetch_idx",
        "jobrunner_jobs_partition_idx",
        "jobrunner_jobs_pkey",
        "jobrunner_jobs_prune_idx",
        "jobrunner_jobs_stage_idx",
        "jobrunner_jobs_unique_idx",
        "jobrunner_jobs_workflow_step_idx",
    ]
    partial = {
        r["indexname"]: r["indexdef"]
        for r in await db.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobrunner_jobs'"
        )
    }
    assert "WHERE (workflow_id IS NOT NULL)" in partial["jobrunner_jobs_workflow_step_idx"]
    assert "WHERE ((chain IS NOT NULL) AND" in partial["jobrunner_jobs_chain_idx"]
    assert "WHERE (batch_id IS NOT NULL)" in partial["jobrunner_jobs_batch_idx"]


async def test_listings_by_worker_on_a_large_table(
    client: jobrunner.Client, many_finished: asyncpg.Connection
) -> None:
    newest = await client.list_jobs(worker="new.work", limit=10)
    assert [j.worker for j in newest] == ["new.work"] * 10
    ids = [j.id for j in newest]
    assert ids == sorted(ids, reverse=True) and ids[0] == await many_finished.fetchval(
        "SELECT max(id) FROM jobrunner_jobs"
    )
    assert await client.list_jobs(worker="missing.work", limit=10) == []
