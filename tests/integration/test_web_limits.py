"""The dashboard and its live data: a queue's cluster-wide limits edited through the control
table (as `jobrunner scale QUEUE --global N`) with the nodes that confirmed; fragments shared
by every viewer, each with its own CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import jobrunner
from jobrunner.web import app as web_app
from jobrunner.web import live
from tests.integration.test_web import _http, csrf_of


@pytest.fixture
async def http(client: jobrunner.Client) -> AsyncIterator[httpx.AsyncClient]:
    async with _http(web_app(client)) as h:
        yield h


LIMITED = {
    "payments": {"limit": 2, "global_limit": 3, "rate_limit": {"allowed": 10, "period": "60s"}},
    "default": 1,
}


async def test_global_and_rate_limits_are_edited_through_the_control_table(
    client, http, make_runner, db
):
    async with make_runner(queues=LIMITED, node="limits-node-1") as runner:
        page = (await http.get("/")).text
        assert re.search(r'data-testid="global-limit">global 3<', page), page
        assert 'data-testid="rate-limit">rate 10/60s<' in page
        token = csrf_of(page)
        url = "/actions/queues/payments"

        done = await http.post(url, data={"action": "global", "global_limit": "5", "csrf": token})
        assert done.status_code == 200, done.text
        assert 'limits-node-1: <span class="badge running">confirmed</span>' in done.text
        assert "Persisted" in done.text
        assert runner.producers["payments"].limits.global_limit == 5
        persisted = "SELECT global_limit FROM jobrunner_queues WHERE name = 'payments'"
        assert await db.fetchval(persisted) == 5
        issued = await db.fetchval("SELECT issued_by FROM jobrunner_control ORDER BY id DESC")
        assert issued.startswith("127.0.0.1 (web, ")

        done = await http.post(url, data={"action": "rate", "rate_limit": "20/30s", "csrf": token})
        assert done.status_code == 200, done.text
        assert 'limits-node-1: <span class="badge running">confirmed</span>' in done.text
        assert "Persisted: nodes that start later follow it" in done.text
        rate = runner.producers["payments"].limits.rate_limit
        assert (rate.allowed, rate.period_s) == (20, 30.0)
        persisted_rate = (
            "SELECT rate_allowed, rate_period_s FROM jobrunner_queues WHERE name = 'payments'"
        )
        assert tuple(await db.fetchrow(persisted_rate)) == (20, 30.0)
        # A node started after the change claims under the persisted rate, not its config's.
        async with make_runner(queues=LIMITED, node="limits-node-2") as later:
            rate = later.producers["payments"].limits.rate_limit
            assert (rate.allowed, rate.period_s) == (20, 30.0)

        bad = await http.post(url, data={"action": "rate", "rate_limit": "lots", "csrf": token})
        assert bad.status_code == 400 and "rate_limit must look like 100/60s" in bad.text
        bad = await http.post(url, data={"action": "global", "global_limit": "0", "csrf": token})
        assert bad.status_code == 400 and "global_limit must be a whole number >= 1" in bad.text

        await http.post(url, data={"action": "rate_reset", "csrf": token})
        await http.post(url, data={"action": "global_reset", "csrf": token})
        rate = runner.producers["payments"].limits.rate_limit
        assert (rate.allowed, rate.period_s) == (10, 60.0)
        assert runner.producers["payments"].limits.global_limit == 3
        assert await db.fetchval(persisted) is None
        assert tuple(await db.fetchrow(persisted_rate)) == (None, None)
        async with make_runner(queues=LIMITED, node="limits-node-3") as later:
            rate = later.producers["payments"].limits.rate_limit
            assert (rate.allowed, rate.period_s) == (10, 60.0)  # its configuration's again
        # A queue without cluster-wide limits offers no such form.
        rows = dict(
            re.findall(r'<tr data-queue="(\w+)">(.*?)</tr>', (await http.get("/")).text, re.S)
        )
        assert 'name="global_limit"' in rows["payments"] and 'name="rate_limit"' in rows["payments"]
        assert 'name="global_limit"' not in rows["default"] and "rate" not in rows["default"]


async def test_a_shared_fragment_carries_each_viewers_own_csrf_token(client, make_runner):
    dashboard = web_app(client)  # one server, two browsers (two cookie jars)
    async with make_runner(queues={"default": 1}), _http(dashboard) as one:
        async with _http(dashboard) as other:
            first = (await one.get("/partial/overview")).text
            second = (await other.get("/partial/overview")).text
    mine, theirs = csrf_of(first), csrf_of(second)
    assert mine != theirs and "\x00" not in first + second
    assert first.replace(mine, "") == second.replace(theirs, "")


async def test_the_chart_reads_the_hour_once_then_only_the_minutes_still_moving(client, db):
    finish = """INSERT INTO jobrunner_jobs (state, queue, worker, args, attempt, completed_at)
                SELECT 'completed', 'default', 'sample.noop', '{}', 1,
                       date_trunc('minute', $3::timestamptz) - $1 * interval '1 minute'
                FROM generate_series(1, $2)"""
    now = await db.fetchval("SELECT now()")  # one clock for the whole test
    await db.execute(finish, 10, 3, now)  # ten minutes ago
    await db.execute(finish, 0, 2, now)  # this minute
    series = live.Throughput()

    def by_minute(minutes: list[dict[str, Any]]) -> list[int]:
        return [m["completed"] for m in minutes]

    first = by_minute(await series.refresh(client, now))
    assert len(first) == 60 and first[-11] == 3 and first[-1] == 2 and sum(first) == 5
    await db.execute(finish, 10, 4, now)  # a past minute changed: not read again
    await db.execute(finish, 0, 1, now)  # the current minute moves: read again
    again = by_minute(await series.refresh(client, now))
    assert again[-11] == 3 and again[-1] == 3 and sum(again) == 6
