"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against
daemons in subprocesses: what an operator does, and what an attacker cannot."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.helpers import FAST_ENV, NO_CONFIG, ROOT, eventually

CHROMIUM = os.environ.get("JOBRUNNER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DOCS = ROOT / "docs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser tests need it "
            "(apt-get install -y chromium, as .ci/run does)"
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def wait_http(url: str) -> None:
    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as h:
                return (await h.get(url)).status_code < 500
        except httpx.TransportError:
            return False

    await eventually(up, 20, interval_s=0.1)


@pytest.fixture
async def dashboard(daemons, db: asyncpg.Connection) -> AsyncIterator[str]:
    """A daemon serving the dashboard (`start --web`); its base URL."""
    port = free_port()
    daemon = daemons(
        queues="default:5,mail:2,payments:2:global_limit=3:rate_limit=100/60s",
        node="web-node-1",
        args=["--web", f"127.0.0.1:{port}"],
    ).start()
    await daemon.wait_ready()
    url = f"http://127.0.0.1:{port}/"
    await wait_http(url + "healthz")  # the daemon's own path: no page is computed yet
    yield url
    assert await daemon.stop() == 0, daemon.output()


async def insert(db: asyncpg.Connection, **fields: Any) -> int:
    return await db.fetchval(
        """INSERT INTO jobrunner_jobs (state, queue, worker, args, attempt, max_attempts, errors,
               discarded_at, attempted_at, attempted_by)
           VALUES ($1::jobrunner_job_state, $2, $3, $4::jsonb, $5::smallint, $5::smallint,
               $6::jsonb, CASE WHEN $1 = 'discarded' THEN now() END, now(),
               ARRAY['web-node-0', 'p'])
           RETURNING id""",
        fields.get("state", "discarded"),
        fields.get("queue", "default"),
        fields.get("worker", "sample.noop"),
        fields.get("args", '{"user_id": 42}'),
        max(fields.get("attempt", 3), 1),
        fields.get(
            "errors",
            '[{"attempt": 3, "at": "2026-12-01T10:00:00+00:00", "error": '
            '"ConnectionError: smtp timed out", "traceback": "Traceback (most recent call '
            'last):\\n  File \\"app/mail.py\\", line 12, in send\\nConnectionError: smtp '
            'timed out"}]',
        ),
    )


async def history(db: asyncpg.Connection) -> None:
    """An hour of finished jobs, so the overview's chart has something to show (up to 57
    minutes old: still in the chart's hour when a minute turns during the test)."""
    await db.execute(
        """INSERT INTO jobrunner_jobs (state, queue, worker, args, attempt, completed_at,
               discarded_at, inserted_at)
           SELECT CASE WHEN i % 23 = 0 THEN 'discarded' ELSE 'completed' END::jobrunner_job_state,
                  CASE WHEN i % 3 = 0 THEN 'mail' ELSE 'default' END, 'sample.noop',
                  jsonb_build_object('n', i), 1,
                  CASE WHEN i % 23 <> 0 THEN now() - (i % 58) * interval '1 minute' END,
                  CASE WHEN i % 23 = 0 THEN now() - (i % 58) * interval '1 minute' END,
                  now() - interval '1 hour'
           FROM generate_series(1, 2400) AS i
           WHERE random() < 0.5 + 0.5 * sin(i / 300.0)"""
    )


async def test_overview_filter_open_and_retry_a_discarded_job(browser, dashboard, db):
    await history(db)
    for n in range(3):
        await insert(db, state="scheduled", args=f'{{"user_id": {n}}}', queue="mail")
    failed = await insert(db)
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    await page.goto(dashboard)
    row = page.locator('tr[data-queue="default"]')
    await expect(row.get_by_test_id("badge")).to_have_text("running")
    await expect(page.locator('tr[data-node="web-node-1"]')).to_be_visible()
    # The chart counts every job finished in the hour's sixty minutes.
    counts = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE state = 'completed') AS completed,
                  count(*) FILTER (WHERE state = 'discarded') AS discarded
           FROM jobrunner_jobs
           WHERE coalesce(completed_at, discarded_at)
                 >= date_trunc('minute', now()) - interval '59 minutes'"""
    )
    summary = page.get_by_test_id("last-hour")
    await expect(summary).to_contain_text(
        f"{counts['completed']} completed, {counts['discarded']} discarded in the last hour"
    )
    DOCS.mkdir(exist_ok=True)
    await page.screenshot(path=str(DOCS / "dashboard-overview.png"), full_page=True)

    await page.get_by_role("link", name="Jobs", exact=True).click()
    await page.locator('input[name="state"][value="discarded"]').check()
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"/jobs\?state=discarded&"))
    rows = page.locator("tr[data-job]")
    await expect(rows).to_have_count(min(50, 1 + await _discarded_history(db)))
    await expect(rows.first).to_have_attribute("data-job", str(failed))
    await page.get_by_role("link", name=str(failed), exact=True).click()
    await expect(page.get_by_test_id("job-state")).to_have_text("discarded")
    await expect(page.get_by_test_id("args")).to_contain_text('"user_id": 42')
    await expect(page.locator("details.error pre")).to_contain_text("ConnectionError")
    await page.screenshot(path=str(DOCS / "dashboard-job.png"), full_page=True)

    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_test_id("job-state")).to_have_text("completed", timeout=15_000)
    await page.get_by_role("link", name="Cron").click()
    await expect(page.get_by_role("heading", name="Cron entries")).to_be_visible()


async def _discarded_history(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM jobrunner_jobs WHERE state = 'discarded' AND errors = '[]'"
        )
    )


async def test_a_pause_shows_on_another_open_page_without_reload(browser, dashboard, db):
    watcher = await browser.new_page()
    actor = await browser.new_page()
    await watcher.goto(dashboard)
    await actor.goto(dashboard)
    badge = watcher.locator('tr[data-queue="mail"]').get_by_test_id("badge")
    await expect(badge).to_have_text("running")
    navigations: list[str] = []
    watcher.on("framenavigated", lambda frame: navigations.append(frame.url))

    await actor.locator('tr[data-queue="mail"]').get_by_role("button", name="Pause").click()
    await expect(actor.get_by_test_id("control")).to_contain_text("pause queue 'mail'")
    await expect(actor.locator("ul.confirmed")).to_contain_text("web-node-1: confirmed")
    await expect(badge).to_have_text("paused", timeout=5_000)

    await actor.go_back()
    await actor.reload()
    await actor.locator('tr[data-queue="mail"]').get_by_role("button", name="Resume").click()
    await expect(badge).to_have_text("running", timeout=5_000)
    assert navigations == []


async def test_a_queues_global_and_rate_limits_are_edited_from_its_row(browser, dashboard, db):
    page = await browser.new_page()
    await page.goto(dashboard)
    row = page.locator('tr[data-queue="payments"]')
    await expect(row.get_by_test_id("global-limit")).to_have_text("global 3")
    await expect(row.get_by_test_id("rate-limit")).to_have_text("rate 100/60s")

    await row.get_by_label("new global limit for payments").fill("6")
    await row.get_by_role("button", name="Set global").click()
    await expect(page.locator("ul.confirmed")).to_contain_text("web-node-1: confirmed")
    await page.goto(dashboard)
    await expect(row.get_by_test_id("global-limit")).to_have_text("global 6")

    await row.get_by_label("new rate limit for payments").fill("50/30s")
    await row.get_by_role("button", name="Set rate").click()
    await expect(page.locator("ul.confirmed")).to_contain_text("web-node-1: confirmed")
    await expect(page.locator("main")).to_contain_text(
        "Persisted: nodes that start later follow it"
    )
    await page.goto(dashboard)  # the node reports its new rate limit with its next heartbeat
    await expect(row.get_by_test_id("rate-limit")).to_have_text("rate 50/30s", timeout=10_000)
    persisted = "SELECT global_limit FROM jobrunner_queues WHERE name = 'payments'"
    assert await db.fetchval(persisted) == 6


async def test_a_script_in_args_is_shown_as_text_and_never_runs(browser, dashboard, db):
    evil = await insert(
        db, args='{"name": "<script>alert(1)</script><img src=x onerror=alert(2)>"}'
    )
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    await page.goto(f"{dashboard}jobs/{evil}")
    await expect(page.get_by_test_id("args")).to_contain_text(
        "<script>alert(1)</script><img src=x onerror=alert(2)>"
    )
    await page.goto(f"{dashboard}jobs")
    await expect(page.locator(f'tr[data-job="{evil}"] td.args')).to_contain_text("<script>")
    await expect(page.locator("img")).to_have_count(0)
    assert dialogs == []


async def test_a_post_without_the_csrf_token_is_refused(browser, dashboard, db):
    job_id = await insert(db)
    page = await browser.new_page()
    await page.goto(f"{dashboard}jobs/{job_id}")
    status = await page.evaluate(
        """async (id) => {
            const body = new URLSearchParams({action: "retry", id: String(id)});
            const response = await fetch("/actions/jobs", {method: "POST", body});
            return response.status;
        }""",
        job_id,
    )
    assert status == 403
    state = await db.fetchval("SELECT state::text FROM jobrunner_jobs WHERE id = $1", job_id)
    assert state == "discarded"


async def test_read_only_mode_has_no_buttons(browser, dsn, db):
    job_id = await insert(db)
    port = free_port()
    env = {**os.environ, **FAST_ENV, "JOBRUNNER_CONFIG": str(NO_CONFIG)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "web", "--read-only", "--listen", f"127.0.0.1:{port}",
         "--dsn", dsn],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        await wait_http(url)
        page = await browser.new_page()
        for path in ("", "jobs", f"jobs/{job_id}"):
            await page.goto(url + path)
            await expect(page.get_by_test_id("mode")).to_have_text("read-only")
            buttons = await page.locator("button").all_inner_texts()
            assert [b for b in buttons if b != "Filter"] == [], path
            await expect(page.locator('form[method="post"]')).to_have_count(0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert b"dashboard at http://127.0.0.1:" in out


async def test_polling_stops_while_the_tab_is_hidden(browser, dashboard, db):
    page = await browser.new_page()
    await page.goto(dashboard)
    body = page.locator("body")
    await expect(body).to_have_attribute("data-polling", "on")
    async with page.expect_request(lambda r: "/partial/overview" in r.url):
        pass  # it polls while visible
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await expect(body).to_have_attribute("data-polling", "off")
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => false});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await expect(body).to_have_attribute("data-polling", "on")
