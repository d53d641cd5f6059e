"""Bad settings and unreadable rows at the command line: one line, never a traceback; an
embedded Runner beside a config file; the benchmark's database names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from jobrunner import bench
from tests.conftest import server_dsn
from tests.helpers import NO_CONFIG, ROOT, run_cli


def one_line_error(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}"), done.stderr


@pytest.mark.parametrize(
    ("text", "starts"),
    [
        ("app = 5", "app must be a module name or a list of them"),
        ("crontab = 5", "crontab must be a list"),
        ("log_level = 5", "log_level must be a string"),
        ("poll_interval_s = 0", "poll_interval_s must be at least 0.01 s"),
    ],
)
def test_start_with_a_bad_config_is_one_line(
    tmp_path: Path, dsn: str, text: str, starts: str
) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_text(text)
    one_line_error(run_cli("start", "--config", str(config), dsn=dsn), starts)


def test_start_with_a_config_that_is_not_utf8_is_one_line(tmp_path: Path, dsn: str) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_bytes(b'node = "caf\xe9"\n')
    one_line_error(run_cli("start", "--config", str(config), dsn=dsn), "cannot read config file")


def test_a_queue_limit_past_64_bits_is_one_line(dsn: str) -> None:
    done = run_cli(
        "start", "--config", str(NO_CONFIG), "--queues", "a:9223372036854775808", dsn=dsn
    )
    one_line_error(done, "queue 'a' limit must be from 1 to 100000")


def test_deep_args_are_one_line(dsn: str) -> None:
    deep = '{"a":' * 5_000 + "1" + "}" * 5_000
    done = run_cli(
        "enqueue", "jobrunner.examples.greet", "--args", deep, "--config", str(NO_CONFIG), dsn=dsn
    )
    one_line_error(done, "--args is nested too deeply to read")


async def test_jobs_list_and_show_read_rows_that_cannot_be_decoded(
    client, db: asyncpg.Connection, dsn: str
) -> None:
    rows = [
        ("args", '{"a":' * 5_000 + "1" + "}" * 5_000),
        ("errors", '{"not": "a list"}'),
        ("errors", "[1, 2]"),
    ]
    ids = []
    for column, value in rows:
        job_id = await db.fetchval(
            f"INSERT INTO jobrunner_jobs (worker, {column}) VALUES ('w', $1::jsonb) RETURNING id",
            value,
        )
        ids.append(job_id)
    ids.append(
        await db.fetchval(
            "INSERT INTO jobrunner_jobs (worker, state, scheduled_at)"
            " VALUES ('w', 'scheduled', '20000-01-01') RETURNING id"
        )
    )
    listed = run_cli("jobs", "list", "--config", str(NO_CONFIG), dsn=dsn)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    listed_json = run_cli("jobs", "list", "--json", "--config", str(NO_CONFIG), dsn=dsn)
    assert listed_json.returncode == 0, listed_json.stderr
    assert sorted(j["id"] for j in json.loads(listed_json.stdout)) == sorted(ids)
    for job_id in ids:
        for extra in ((), ("--json",)):
            shown = run_cli(
                "jobs", "show", str(job_id), *extra, "--config", str(NO_CONFIG), dsn=dsn
            )
            assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    shown = run_cli("jobs", "show", str(ids[0]), "--json", "--config", str(NO_CONFIG), dsn=dsn)
    assert "jobrunner_unreadable" in json.loads(shown.stdout)["args"]


def test_an_embedded_runner_applies_the_config_file_of_its_directory(
    tmp_path: Path, dsn: str, db: asyncpg.Connection
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "embedded_app.py").write_text(
        textwrap.dedent(
            """
            from jobrunner import worker

            @worker(name="embedded.tick")
            async def tick(job):
                return None
            """
        )
    )
    (tmp_path / "config" / "jobrunner.toml").write_text(
        textwrap.dedent(
            """
            app = ["embedded_app"]

            [[crontab]]
            schedule = "* * * * *"
            worker = "embedded.tick"
            """
        )
    )
    script = textwrap.dedent(
        f"""
        import asyncio, jobrunner

        async def main():
            async with jobrunner.connect({dsn!r}) as client:
                async with jobrunner.Runner(client, queues={{"default": 1}}):
                    print("started", flush=True)

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBRUNNER_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "started" in done.stdout, done.stderr[-2000:]


async def test_the_benchmark_quotes_database_names(worker_suffix: str) -> None:
    name = f'jobrunner bench "{worker_suffix}"'
    url = await bench.create_database(server_dsn(), name)
    try:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
    finally:
        await bench.drop_database(server_dsn(), name)
