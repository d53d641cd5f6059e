"""Queue limits at the command line: bad input, `scale --global`, and `status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import jobrunner
from jobrunner import ConfigError
from jobrunner.core.config import QueueConfig, parse_queues, queue_config
from tests.apps.limit_workers import LOG_TABLE, hold
from tests.helpers import Daemon, eventually, run_cli

APP = ("tests.apps.limit_workers",)

BAD_TABLES = [
    (
        "{ limit = 5, global_limit = 0 }",
        "queue 'q' global_limit must be a whole number >= 1, got 0",
    ),
    ("{ global_limit = -3 }", "queue 'q' global_limit must be a whole number >= 1, got -3"),
    ("{ global_limit = 2.5 }", "queue 'q' global_limit must be a whole number >= 1, got 2.5"),
    ('{ global_limit = "5" }', "queue 'q' global_limit must be a whole number >= 1, got '5'"),
    (
        '{ rate_limit = { allowed = 10, period = "soon" } }',
        "queue 'q' rate_limit period must be a duration > 0 like '60s', '5m', '1h' or "
        "seconds, got 'soon'",
    ),
    (
        "{ rate_limit = { allowed = 10 } }",
        "queue 'q' rate_limit needs a period, like { allowed = 100, period = '60s' }",
    ),
    (
        '{ rate_limit = { allowed = 0, period = "1m" } }',
        "queue 'q' rate_limit allowed must be a whole number >= 1, got 0",
    ),
    (
        "{ global_limit = 1, partition = { keys = [1, 2] } }",
        "queue 'q' partition keys must be a list of non-empty strings, got [1, 2]",
    ),
    (
        '{ global_limit = 1, partition = { fields = ["tags"] } }',
        "queue 'q' partition fields are worker, args, got 'tags'",
    ),
]


@pytest.mark.parametrize(("table", "line"), BAD_TABLES, ids=[t for t, _ in BAD_TABLES])
def test_bad_limits_in_the_config_file_get_one_line_and_nothing_starts(
    tmp_path: Path, dsn: str, db: asyncpg.Connection, table: str, line: str
) -> None:
    config = tmp_path / "jobrunner.toml"
    config.write_text(
        f'database_url = "{dsn}"\napp = ["tests.apps.limit_workers"]\n'
        f"[queues]\nok = 5\nq = {table}\n"
    )
    done = run_cli("start", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {line}"]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ("q:5:global_limit=0", "queue 'q' global_limit must be a whole number >= 1, got 0"),
        ("q:5:global_limit=many", "queue 'q' global_limit must be a whole number >= 1, got 'many'"),
        (
            "q:5:rate_limit=100/fortnight",
            "queue 'q' rate_limit period must be a duration > 0 like '60s', '5m', '1h' or "
            "seconds, got 'fortnight'",
        ),
        ("q:5:rate_limit=100", "queue 'q' rate_limit must look like 100/60s, got '100'"),
        (
            "q:5:limit_global=3",
            "queue 'q' option 'limit_global=3' is not one of global_limit=..., rate_limit=..., "
            "partition_keys=..., partition_fields=...",
        ),
    ],
)
def test_bad_limits_in_queues_flag_get_one_line(dsn: str, spec: str, line: str) -> None:
    done = run_cli("start", "--queues", f"ok:1,{spec}", "--app", APP[0], dsn=dsn)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {line}"]


def test_queue_shapes_are_the_same_in_flags_config_and_runner() -> None:
    spec = parse_queues(
        "payments:5:global_limit=5,mail:20:rate_limit=100/60s,"
        "imports:10:global_limit=1:partition_keys=customer_id"
    )
    shapes = {
        "payments": {"limit": 5, "global_limit": 5},
        "mail": {"limit": 20, "rate_limit": {"allowed": 100, "period": "60s"}},
        "imports": {"limit": 10, "global_limit": 1, "partition": {"keys": ["customer_id"]}},
    }
    assert {name: queue_config(name, raw) for name, raw in shapes.items()} == spec
    assert queue_config("plain", 7) == QueueConfig(limit=7)
    assert not spec["payments"].rate_limit and spec["mail"].rate_limit.period_s == 60.0


async def test_runner_refuses_bad_limits_naming_queue_and_option(client: jobrunner.Client) -> None:
    with pytest.raises(ConfigError, match="queue 'mail' rate_limit needs a period"):
        jobrunner.Runner(client, queues={"mail": {"limit": 20, "rate_limit": {"allowed": 100}}})


async def test_scale_global_applies_live_persists_and_shows_in_status(
    dsn: str, db: asyncpg.Connection, client: jobrunner.Client, daemons: Callable[..., Daemon]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    first = await daemons(queues="pay:4", app=APP).start().wait_ready()
    done = run_cli("scale", "pay", "--global", "0", dsn=dsn)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: queue 'pay' global_limit must be a whole number >= 1, got 0"
    ]
    assert await db.fetchval("SELECT count(*) FROM jobrunner_control") == 0

    done = run_cli("scale", "pay", "--global", "1", dsn=dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "at most 1 at once across every node" in done.stdout
    assert await db.fetchval("SELECT global_limit FROM jobrunner_queues WHERE name = 'pay'") == 1
    second = await daemons(queues="pay:4", app=APP).start().wait_ready()
    await client.insert_all(
        [hold.new({"sleep": 3600, "customer": i}, queue="pay") for i in range(3)]
    )

    async def one_running() -> bool:
        assert await db.fetchval("SELECT count(*) FROM limit_log") == 1
        return True

    await eventually(one_running, timeout_s=20)

    async def status_shows_it() -> dict[str, Any]:
        done = run_cli("status", "--json", dsn=dsn)
        assert done.returncode == 0, done.stderr
        (pay,) = [q for q in json.loads(done.stdout)["queues"] if q["name"] == "pay"]
        assert pay["limits"]["global_limit"] == 1 and pay["limits"]["executing"] == 1
        # a global limit alone: the one slot, held by the node running the job
        assert list(pay["limits"]["slots"].values()) == [1]
        return pay

    await eventually(status_shows_it, timeout_s=10)
    text = run_cli("status", dsn=dsn).stdout
    assert "LIMITS" in text and "pay" in text.split("LIMITS", 1)[1]
    assert "slots of pay held by node: " in text

    # Raised live: the nodes started before and after the command both take more.
    assert run_cli("scale", "pay", "--global", "3", dsn=dsn).returncode == 0

    async def three_running() -> bool:
        assert await db.fetchval("SELECT count(*) FROM limit_log") == 3
        return True

    await eventually(three_running, timeout_s=20)
    for node in (first, second):
        node.kill()


async def test_status_shows_rate_window_use_and_busiest_partitions(
    dsn: str, db: asyncpg.Connection, client: jobrunner.Client, daemons: Callable[..., Daemon]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    await (
        daemons(queues="imports:10:rate_limit=4/60s:partition_keys=customer", app=APP)
        .start()
        .wait_ready()
    )
    jobs = [hold.new({"customer": "big"}, queue="imports") for _ in range(20)]
    jobs += [hold.new({"customer": "small"}, queue="imports") for _ in range(2)]
    jobs += [hold.new({}, queue="imports")]  # no customer: the partition where it is null
    await client.insert_all(jobs)

    async def settled() -> dict[str, Any]:
        done = run_cli("status", "--json", dsn=dsn)
        (imports,) = [q for q in json.loads(done.stdout)["queues"] if q["name"] == "imports"]
        limits = imports["limits"]
        assert limits["rate_window_used"] == 7, limits
        return limits

    limits = await eventually(settled, timeout_s=20)
    assert limits["rate_limit"] == {"allowed": 4, "period_s": 60.0}
    assert limits["partitions"] == 3
    busiest = limits["busiest_partitions"]
    assert busiest[0] == {
        "partition": {"customer": "big"},
        "executing": 0,
        "available": 16,
        "started": 4,
    }
    assert {
        "partition": {"customer": None},
        "executing": 0,
        "available": 0,
        "started": 1,
    } in busiest
    text = run_cli("status", dsn=dsn).stdout
    assert '{"customer": "big"}: 0 executing, 16 waiting, 4 started in the window' in text


async def test_scale_rate_applies_live_persists_and_a_later_node_follows_it(
    dsn: str, db: asyncpg.Connection, client: jobrunner.Client, daemons: Callable[..., Daemon]
) -> None:
    await db.execute(LOG_TABLE)
    await db.execute("TRUNCATE limit_log")
    first = await daemons(queues="imports:10:rate_limit=2/600s", app=APP).start().wait_ready()
    await client.insert_all([hold.new({}, queue="imports") for _ in range(6)])

    async def started(n: int) -> bool:
        assert await db.fetchval("SELECT count(*) FROM limit_log") == n
        return True

    await eventually(lambda: started(2), timeout_s=20)  # the window holds two
    bad = run_cli("scale", "imports", "--rate", "lots", dsn=dsn)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: queue 'imports' rate_limit must look like 100/60s, got 'lots'"
    ]
    assert await db.fetchval("SELECT count(*) FROM jobrunner_control") == 0

    done = run_cli("scale", "imports", "--rate", "5/600s", dsn=dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "starts at most 5 every 600s on every node (persisted: nodes that start later " in (
        done.stdout
    )
    await eventually(lambda: started(5), timeout_s=20)  # three more, then the window is full
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs WHERE state = 'available'") == 1
    rate = "SELECT rate_allowed, rate_period_s FROM jobrunner_queues WHERE name = 'imports'"
    assert tuple(await db.fetchrow(rate)) == (5, 600.0)

    # With no node live, the change is only persisted; a node started later, configured
    # with 2/600s (which the window's five starts already exceed), claims under it.
    first.signal()
    assert await first.wait() == 0
    done = run_cli("scale", "imports", "--rate", "7/600s", dsn=dsn)
    assert done.returncode == 0 and "no live node serves it" in done.stdout, done.stdout
    await client.insert_all([hold.new({}, queue="imports") for _ in range(4)])
    later = await daemons(queues="imports:10:rate_limit=2/600s", app=APP).start().wait_ready()
    await eventually(lambda: started(7), timeout_s=20)
    assert await db.fetchval("SELECT count(*) FROM jobrunner_jobs WHERE state = 'available'") == 3

    async def node_rate(expected: dict[str, Any]) -> bool:
        """The rate limit the live node reports claiming under (the first node is gone)."""
        found = json.loads(run_cli("status", "--json", dsn=dsn).stdout)
        (imports,) = [q for q in found["queues"] if q["name"] == "imports"]
        assert imports["nodes"] == [later.node], imports
        assert imports["limits"]["rate_limit"] == expected, imports
        return True

    await eventually(lambda: node_rate({"allowed": 7, "period_s": 600.0}), timeout_s=10)

    # Reset: the row forgets it and the live node is back to its configuration.
    done = run_cli("scale", "imports", "--rate", "reset", dsn=dsn)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "back to each node's configured rate limit on every node (persisted" in done.stdout
    assert f"applied by 1 node: {later.node}" in done.stdout
    assert tuple(await db.fetchrow(rate)) == (None, None)
    await eventually(lambda: node_rate({"allowed": 2, "period_s": 600.0}), timeout_s=10)
    other = run_cli("scale", "nope", "--rate", "5/60s", dsn=dsn)
    assert other.returncode != 0 and "unknown queue 'nope'" in other.stderr
