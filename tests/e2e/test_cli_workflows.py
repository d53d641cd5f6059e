"""`jobrunner workflows show|cancel` and `jobrunner jobs list --workflow`, as a user runs
them."""

from __future__ import annotations

import json

import jobrunner
from jobrunner import Workflow
from tests.apps.workflow_workers import step
from tests.e2e.test_cli_status_jobs import bad, cells, cli, ok


def nightly() -> Workflow:
    wf = Workflow("nightly")
    wf.add("extract", step.new({"label": "extract"}))
    wf.add("transform", step.new({"label": "transform"}), deps=["extract"])
    wf.add("load", step.new({"label": "load"}), deps=["extract", "transform"])
    return wf


async def test_show_lists_steps_and_what_each_waits_on(client: jobrunner.Client, dsn: str) -> None:
    run = await client.insert_workflow(nightly())
    lines = ok(cli(dsn, "workflows", "show", str(run.id))).splitlines()
    assert lines[0] == f"workflow {run.id} 'nightly': 3 steps (1 available, 2 scheduled)"
    assert cells(lines[1]) == ["STEP", "JOB", "STATE", "WORKER", "DEPS", "DETAIL"]
    rows = {cells(line)[0]: cells(line) for line in lines[2:]}
    assert rows["extract"][2:] == ["available", "wfe.step", "-", "-"]
    assert rows["transform"][2:] == ["waiting", "wfe.step", "extract", "waiting on extract"]
    assert rows["load"][2:] == [
        "waiting",
        "wfe.step",
        "extract, transform",
        "waiting on extract, transform",
    ]
    body = json.loads(ok(cli(dsn, "workflows", "show", str(run.id), "--json")))
    assert body["id"] == run.id and body["name"] == "nightly"
    load = next(s for s in body["steps"] if s["step"] == "load")
    assert load["deps"] == ["extract", "transform"] and load["id"] == run.jobs["load"].id
    assert load["waiting_on"] == ["extract", "transform"]


async def test_jobs_list_filters_by_workflow(client: jobrunner.Client, dsn: str) -> None:
    run = await client.insert_workflow(nightly())
    await client.insert(step.new({"label": "elsewhere"}))
    listed = json.loads(ok(cli(dsn, "jobs", "list", "--workflow", str(run.id), "--json")))
    assert [j["id"] for j in listed] == sorted((j.id for j in run.jobs.values()), reverse=True)
    only = json.loads(
        ok(cli(dsn, "jobs", "list", "--workflow", str(run.id), "--state", "available", "--json"))
    )
    assert [j["id"] for j in only] == [run.jobs["extract"].id]
    bad(
        cli(dsn, "jobs", "list", "--workflow", "4242"),
        "no workflow with id 4242; see 'jobrunner workflows show'",
    )


async def test_cancel_cancels_unfinished_steps_and_refuses_unknown_ids(
    client: jobrunner.Client, dsn: str
) -> None:
    run = await client.insert_workflow(nightly())
    assert ok(cli(dsn, "workflows", "cancel", str(run.id))) == (
        f"cancelled 3 step(s) of workflow {run.id}\n"
    )
    for job in run.jobs.values():
        found = await client.get_job(job.id)
        assert found is not None and found.state.value == "cancelled"
    assert ok(cli(dsn, "workflows", "cancel", str(run.id))) == (
        f"cancelled 0 step(s) of workflow {run.id}\n"
    )
    bad(cli(dsn, "workflows", "show", "4242"), "no workflow with id 4242")
    result = cli(dsn, "workflows", "show", "abc")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: invalid value for 'ID'")


async def test_jobs_show_prints_the_step_and_its_recorded_result(
    client: jobrunner.Client, dsn: str, db
) -> None:
    run = await client.insert_workflow(nightly())
    extract = run.jobs["extract"].id
    await db.execute(
        "UPDATE jobrunner_jobs SET state = 'completed', result = '{\"rows\": 3}' WHERE id = $1",
        extract,
    )
    text = ok(cli(dsn, "jobs", "show", str(extract)))
    assert f"  workflow      {run.id}, step 'extract'" in text.splitlines()
    assert text.endswith('result\n  {\n    "rows": 3\n  }\n')
    shown = json.loads(ok(cli(dsn, "jobs", "show", str(extract), "--json")))
    assert shown["result"] == {"rows": 3} and shown["workflow_id"] == run.id
    assert shown["step"] == "extract"
