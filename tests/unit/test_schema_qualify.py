"""The one rule that puts jobrunner's unqualified SQL in the configured schema."""

from __future__ import annotations

import pytest

from jobrunner.core.errors import ConfigError
from jobrunner.core.schema import channel, qualify, validate_schema


def test_the_default_schema_leaves_statements_as_they_are() -> None:
    sql = "SELECT * FROM jobrunner_jobs WHERE state = 'available'"
    assert qualify(sql) is sql and qualify(sql, "public") is sql


def test_bare_names_types_and_functions_go_in_the_schema() -> None:
    sql = (
        "INSERT INTO jobrunner_jobs AS j (state) VALUES ($1::jobrunner_job_state) "
        "RETURNING jobrunner_rate_wait(j.queue, 1.0), CAST($2 AS jobrunner_job_state[])"
    )
    assert qualify(sql, "jobs") == (
        'INSERT INTO "jobs".jobrunner_jobs AS j (state) VALUES ($1::"jobs".jobrunner_job_state) '
        'RETURNING "jobs".jobrunner_rate_wait(j.queue, 1.0), '
        'CAST($2 AS "jobs".jobrunner_job_state[])'
    )


def test_channels_are_the_schemas_and_other_literals_stay() -> None:
    sql = "SELECT pg_notify('jobrunner_insert', q), 'jobrunner_limit:' || q, 'x jobrunner_jobs'"
    assert qualify(sql, "jobs") == (
        "SELECT pg_notify('jobs.jobrunner_insert', q), 'jobrunner_limit:' || q, 'x jobrunner_jobs'"
    )
    assert qualify("LISTEN jobrunner_insert", "jobs") == 'LISTEN "jobs.jobrunner_insert"'
    assert (
        qualify("NOTIFY jobrunner_control, '1'", "jobs") == "NOTIFY \"jobs.jobrunner_control\", '1'"
    )
    assert channel("jobrunner_insert", "jobs") == "jobs.jobrunner_insert"
    assert channel("jobrunner_insert") == "jobrunner_insert"


@pytest.mark.parametrize(
    "sql",
    [
        "-- jobrunner_jobs in a comment\nSELECT 1",
        "/* jobrunner_jobs */ SELECT 1",
        'SELECT "jobrunner_jobs" FROM t',
        "ALTER TABLE t ADD CONSTRAINT jobrunner_check CHECK (true)",
        "CREATE INDEX jobrunner_jobs_idx ON t (a)",
        "DROP TRIGGER jobrunner_jobs_release_unique ON t",
        "DROP TRIGGER IF EXISTS jobrunner_enqueue_x ON t",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobrunner_x_idx ON t (a)",
        "SELECT * FROM other.jobrunner_jobs",
        'SELECT * FROM "jobs".jobrunner_jobs',
    ],
)
def test_what_takes_a_bare_or_qualified_name_is_left_alone(sql: str) -> None:
    assert qualify(sql, "jobs") == sql


def test_qualifying_twice_changes_nothing_more() -> None:
    once = qualify("SELECT * FROM jobrunner_jobs, jobrunner_nodes", "jobs")
    assert qualify(once, "jobs") == once


@pytest.mark.parametrize("name", ["Jobs", "1jobs", "jobs-x", 'a"b', "x y", "", "a" * 33, 5])
def test_a_schema_that_is_not_a_lowercase_identifier_is_refused(name: object) -> None:
    with pytest.raises(ConfigError, match="schema must be"):
        validate_schema(name)


def test_function_bodies_follow_the_rule_inside() -> None:
    sql = (
        "CREATE FUNCTION jobrunner_f() RETURNS bigint LANGUAGE sql AS $$\n"
        "    SELECT count(pg_notify('jobrunner_insert', queue)) FROM jobrunner_jobs\n$$"
    )
    assert qualify(sql, "jobs") == (
        'CREATE FUNCTION "jobs".jobrunner_f() RETURNS bigint LANGUAGE sql AS $$\n'
        "    SELECT count(pg_notify('jobs.jobrunner_insert', queue)) "
        'FROM "jobs".jobrunner_jobs\n$$'
    )
