"""The dashboard's app over a real database, through HTTP (httpx's ASGI transport): pages, the
JSON API, filters and keyset pages, actions with CSRF, auth, read-only mode, escaping."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

import jobrunner
from jobrunner.web import app as web_app
from tests.apps import sample


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found[1]


@pytest.fixture
async def http(client: jobrunner.Client) -> AsyncIterator[httpx.AsyncClient]:
    async with _http(web_app(client)) as h:
        yield h


def _http(asgi: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi), base_url="http://dash.test", **kwargs
    )


async def discarded(db: asyncpg.Connection, **fields: Any) -> int:
    """A discarded job with one error, as the daemon leaves one."""
    return await db.fetchval(
        """INSERT INTO jobrunner_jobs (state, queue, worker, args, tags, attempt, max_attempts,
               errors, discarded_at, attempted_at, attempted_by)
           VALUES ('discarded', $1, $2, $3::jsonb, $4, 3, 3,
               '[{"attempt": 3, "at": "2026-01-01T00:00:00+00:00", "error": "RuntimeError: boom",
                  "traceback": "Traceback (most recent call last):\\n  boom"}]',
               now(), now(), ARRAY['node-a', 'p'])
           RETURNING id""",
        fields.get("queue", "default"),
        fields.get("worker", "sample.fail"),
        fields.get("args", '{"n": 1}'),
        fields.get("tags", ["mail"]),
    )


async def test_every_page_and_the_api_answer(client, http, db):
    job = await client.insert(sample.noop.new({"n": 1}, tags=["t1"], meta={"m": 2}))
    for path in ("/", "/jobs", f"/jobs/{job.id}", "/cron", "/partial/overview", "/partial/jobs"):
        response = await http.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "script-src 'self'" in response.headers["content-security-policy"]
    queues = (await http.get("/api/queues")).json()
    assert [q["name"] for q in queues["queues"]] == ["default"]
    assert queues["queues"][0]["jobs"]["available"] == 1
    assert len(queues["throughput"]) == 60
    listed = (await http.get("/api/jobs")).json()
    assert [j["id"] for j in listed["jobs"]] == [job.id] and listed["next_before"] is None
    one = (await http.get(f"/api/jobs/{job.id}")).json()
    assert one["args"] == {"n": 1} and one["meta"] == {"m": 2} and one["tags"] == ["t1"]
    missing = await http.get("/api/jobs/999999")
    assert missing.status_code == 404 and missing.json() == {"error": "no job with id 999999"}


async def test_no_inline_script_in_any_page(client, http, db):
    job_id = await discarded(db)
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/cron"):
        page = (await http.get(path)).text
        assert re.findall(r"<script(?![^>]*\bsrc=)", page) == [], path
        assert " on" not in re.sub(r"<[^>]*>", "", "") and not re.search(r"\son\w+=", page)


async def test_a_script_in_args_tags_or_errors_is_shown_as_text(client, http, db):
    job_id = await discarded(
        db, args='{"name": "<script>alert(1)</script>"}', tags=["<img src=x onerror=alert(2)>"]
    )
    await db.execute(
        "UPDATE jobrunner_jobs SET errors = jsonb_set(errors, '{0,error}', "
        """'"<script>alert(3)</script>"') WHERE id = $1""",
        job_id,
    )
    for path in ("/jobs", f"/jobs/{job_id}", "/partial/jobs"):
        page = (await http.get(path)).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    detail = (await http.get(f"/jobs/{job_id}")).text
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(2)&gt;" in detail


async def test_filters_and_keyset_pages(client, http, db):
    await db.execute(
        """INSERT INTO jobrunner_jobs (state, queue, worker, args, tags)
           SELECT CASE WHEN i % 2 = 0 THEN 'available' ELSE 'scheduled' END::jobrunner_job_state,
                  CASE WHEN i % 3 = 0 THEN 'mail' ELSE 'default' END,
                  'w' || (i % 5), jsonb_build_object('i', i, 'who', 'user-' || i),
                  CASE WHEN i % 7 = 0 THEN ARRAY['seven'] ELSE ARRAY[]::text[] END
           FROM generate_series(1, 120) AS i"""
    )

    async def ids(**params: Any) -> tuple[list[int], int | None]:
        body = (await http.get("/api/jobs", params=params)).json()
        return [j["id"] for j in body["jobs"]], body["next_before"]

    first, cursor = await ids(limit=50)
    assert first == list(range(120, 70, -1)) and cursor == 71
    second, cursor = await ids(limit=50, before=cursor)
    third, end = await ids(limit=50, before=cursor)
    assert second == list(range(70, 20, -1)) and third == list(range(20, 0, -1)) and end is None
    assert (await ids(state="available", limit=500))[0] == list(range(120, 0, -2))
    mail = (await ids(queue="mail", state=["available", "scheduled"], limit=500))[0]
    assert mail == [i for i in range(120, 0, -1) if i % 3 == 0]
    assert (await ids(worker="w1", limit=500))[0] == [i for i in range(120, 0, -1) if i % 5 == 1]
    assert (await ids(tag="seven", limit=500))[0] == [i for i in range(120, 0, -1) if i % 7 == 0]
    assert (await ids(args='{"i": 42}'))[0] == [42]
    assert (await ids(args="user-11", limit=500))[0] == [119, 118, 117, 116, 115, 114, 113,
                                                          112, 111, 110, 11]  # fmt: skip
    oldest = (await http.get("/api/jobs", params={"order": "oldest", "limit": 50})).json()
    assert [j["id"] for j in oldest["jobs"]] == list(range(1, 51)) and oldest["next_after"] == 50
    after = {"order": "oldest", "after": 100, "queue": "mail"}
    assert [j["id"] for j in (await http.get("/api/jobs", params=after)).json()["jobs"]] == [
        102,
        105,
        108,
        111,
        114,
        117,
        120,
    ]
    assert (await http.get("/api/jobs", params={"order": "up"})).status_code == 400
    bad = await http.get("/api/jobs", params={"args": "{not json"})
    assert bad.status_code == 400 and "not a JSON object" in bad.json()["error"]
    assert (await http.get("/api/jobs", params={"from": "yesterday"})).status_code == 400
    assert (await http.get("/api/jobs", params={"limit": "0"})).status_code == 400
    page = (await http.get("/jobs", params={"queue": "mail", "limit": 10})).text
    assert 'href="http://dash.test/jobs?queue=mail&amp;before=' in page


async def test_an_action_needs_the_csrf_token_of_the_page(client, http, db):
    job_id = await discarded(db)
    refused = await http.post("/actions/jobs", data={"action": "retry", "id": str(job_id)})
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = await http.post(
        "/actions/jobs", data={"action": "retry", "id": str(job_id), "csrf": "forged"}
    )
    assert wrong.status_code == 403
    assert (await client.get_job(job_id)).state.value == "discarded"
    token = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    done = await http.post(
        "/actions/jobs", data={"action": "retry", "id": str(job_id), "csrf": token}
    )
    assert done.status_code == 303 and done.headers["location"].endswith(f"/jobs/{job_id}")
    assert (await client.get_job(job_id)).state.value == "available"
    assert (await http.get("/actions/jobs")).status_code == 405


async def test_bulk_actions_on_every_matching_job_confirm_a_count_first(client, http, db):
    mine = [await discarded(db, queue="mail") for _ in range(3)]
    other = await discarded(db, queue="default")
    events: list[dict[str, Any]] = []
    unsubscribe = jobrunner.subscribe(lambda _e, f: events.append(f), ["web.action"])
    try:
        token = csrf_of((await http.get("/jobs", params={"queue": "mail"})).text)
        form = {"csrf": token, "action": "retry:all", "queue": "mail", "state": "discarded"}
        ask = await http.post("/actions/jobs", data=form)
        assert ask.status_code == 200 and "Retry 3 jobs" in ask.text
        assert {(await client.get_job(i)).state.value for i in mine} == {"discarded"}
        done = await http.post("/actions/jobs", data={**form, "confirm": "yes"})
        assert done.status_code == 200 and "Retried 3 jobs" in done.text
    finally:
        unsubscribe()
    assert {(await client.get_job(i)).state.value for i in mine} == {"available"}
    assert (await client.get_job(other)).state.value == "discarded"
    assert events == [
        {
            "who": "127.0.0.1",
            "action": "jobs.retry",
            "scope": "all matching",
            "job_ids": mine,
            "filter": {"state": "discarded", "queue": "mail"},
        }
    ]
    form = {"csrf": token, "action": "delete", "id": [str(i) for i in mine]}
    ask = await http.post("/actions/jobs", data=form)
    assert "Delete 3 jobs" in ask.text
    await http.post("/actions/jobs", data={**form, "confirm": "yes"})
    assert [await client.get_job(i) for i in mine] == [None, None, None]
    cancel = {"csrf": token, "action": "cancel", "id": str(other)}
    assert (await http.post("/actions/jobs", data=cancel)).status_code == 303
    assert (await client.get_job(other)).state.value == "discarded"  # finished: left alone


async def test_read_only_shows_no_action_and_refuses_them(client, db):
    job_id = await discarded(db)
    async with _http(web_app(client, read_only=True)) as http:
        for path in ("/", "/jobs", f"/jobs/{job_id}"):
            page = (await http.get(path)).text
            assert 'method="post"' not in page and "<button" not in page.replace(
                "<button>Filter</button>", ""
            ), path
        token = re.search(r'data-poll-ms="\d+"', page)
        assert token
        refused = await http.post(
            "/actions/jobs", data={"action": "retry", "id": str(job_id), "csrf": "x"}
        )
        assert refused.status_code == 403 and "read-only" in refused.text
        assert (
            await http.post("/actions/queues/default", data={"action": "pause"})
        ).status_code == 403


async def test_basic_auth_and_bearer_token(client, db):
    asgi = web_app(client, auth="ops:s3cret", token="tok-123")
    async with _http(asgi) as http:
        anonymous = await http.get("/")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith(
            "Basic"
        )
        assert (await http.get("/api/jobs", auth=("ops", "wrong"))).status_code == 401
        assert (await http.get("/api/jobs", auth=("ops", "s3cret"))).status_code == 200
        bearer = {"authorization": "Bearer tok-123"}
        assert (await http.get("/api/jobs", headers=bearer)).status_code == 200
        garbage = {"authorization": "Basic " + base64.b64encode(b"\xff").decode()[:-1]}
        assert (await http.get("/api/jobs", headers=garbage)).status_code == 401


async def test_the_host_apps_hook_decides_per_request(client, db):
    def authorize(request: Any) -> str | None:
        return {"admin": "admin", "viewer": "read-only"}.get(request.headers.get("x-user", ""))

    async with _http(web_app(client, authorize=authorize)) as http:
        assert (await http.get("/", headers={"x-user": "nobody"})).status_code == 403
        viewer = (await http.get("/", headers={"x-user": "viewer"})).text
        admin = (await http.get("/", headers={"x-user": "admin"})).text
        assert "read-only" in viewer and 'data-testid="mode">admin' in admin


async def test_mounted_under_a_path_in_a_host_app(client, db):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job = await client.insert(sample.noop.new({}))
    host = Starlette(routes=[Mount("/ops/jobs", app=web_app(client))])
    async with _http(host) as http:
        page = await http.get(f"/ops/jobs/jobs/{job.id}")
        assert page.status_code == 200
        assert 'href="http://dash.test/ops/jobs/static/app.css"' in page.text
        assert "Path=/ops/jobs" in page.headers["set-cookie"]
        assert (await http.get("/ops/jobs/api/jobs")).json()["jobs"][0]["id"] == job.id


async def test_no_database_password_in_any_page(settings, db):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(settings.database_url)
    netloc = f"{parts.username or 'postgres'}:hunter2-secret@{parts.hostname}:{parts.port or 5432}"
    dsn = urlunsplit(parts._replace(netloc=netloc))
    async with jobrunner.connect(dsn) as client:
        await discarded(db)
        async with _http(web_app(client)) as http:
            for path in ("/", "/jobs", "/jobs/1", "/cron", "/api/queues", "/api/jobs"):
                assert "hunter2" not in (await http.get(path)).text, path


async def test_pausing_a_queue_through_the_control_table_reports_who_applied(
    client, http, make_runner, db
):
    async with make_runner(queues={"default": 2}, node="dash-node-1"):
        token = csrf_of((await http.get("/")).text)
        done = await http.post("/actions/queues/default", data={"action": "pause", "csrf": token})
        assert done.status_code == 200, done.text
        assert 'dash-node-1: <span class="badge running">confirmed</span>' in done.text
        overview = (await http.get("/api/queues")).json()
        assert overview["queues"][0]["paused"] is True
        issued = await db.fetchval("SELECT issued_by FROM jobrunner_control ORDER BY id DESC")
        assert issued.startswith("127.0.0.1 (web, ") and "@" in issued
        scale = {"action": "scale", "limit": "0", "csrf": token}
        bad = await http.post("/actions/queues/default", data=scale)
        assert bad.status_code == 400 and "queue limit must be a whole number" in bad.text
        unknown = await http.post("/actions/queues/nope", data={"action": "pause", "csrf": token})
        assert unknown.status_code == 400 and "unknown queue 'nope'" in unknown.text


async def test_served_under_a_prefix_by_a_plain_asgi_router(client, db):
    """As a Django project's asgi.py routes a path prefix to it (see the README)."""
    job = await client.insert(sample.noop.new({}))
    dashboard = web_app(client)

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/admin/jobs"):
            scope = {**scope, "root_path": scope.get("root_path", "") + "/admin/jobs"}
            return await dashboard(scope, receive, send)
        raise AssertionError("not routed")

    async with _http(application) as http:
        page = await http.get(f"/admin/jobs/jobs/{job.id}")
        assert page.status_code == 200
        assert 'href="http://dash.test/admin/jobs/static/app.css"' in page.text
        assert (await http.get("/admin/jobs/static/app.js")).status_code == 200


async def test_a_recorded_result_is_shown_escaped_on_the_jobs_page(client, http, db):
    job = await client.insert(sample.noop.new({}))
    await db.execute(
        """UPDATE jobrunner_jobs SET state = 'completed', completed_at = now(),
               result = '{"rows": 10, "note": "<b>done</b>"}' WHERE id = $1""",
        job.id,
    )
    page = (await http.get(f"/jobs/{job.id}")).text
    assert "&#34;rows&#34;: 10" in page and "&lt;b&gt;done&lt;/b&gt;" in page
    assert "<b>done" not in page
    assert (await http.get(f"/api/jobs/{job.id}")).json()["result"]["rows"] == 10


async def test_a_workflow_step_s_page_names_its_workflow_and_step(client, http):
    wf = jobrunner.Workflow("page")
    wf.add("first", sample.noop.new({"n": 1}))
    run = await client.insert_workflow(wf)
    page = (await http.get(f"/jobs/{run.jobs['first'].id}")).text
    assert f'<dd data-testid="workflow">{run.id}, step <code>first</code></dd>' in page
    plain = await client.insert(sample.noop.new({"n": 2}))
    assert 'data-testid="workflow"' not in (await http.get(f"/jobs/{plain.id}")).text
    one = (await http.get(f"/api/jobs/{run.jobs['first'].id}")).json()
    assert one["workflow_id"] == run.id and one["step"] == "first"
