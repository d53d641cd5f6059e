"""The shared job filter's listing (the dashboard's jobs page, `client.list_jobs`, the CLI's
`jobs list`) on a million rows: a keyset page is a short walk along the primary key,
whatever page it is, shown by EXPLAIN ANALYZE."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from jobrunner.core.job_filter import JobFilter
from jobrunner.db.queries.bulk import LIST_JOBS, LIST_JOBS_OLDEST

ROWS = 1_000_000


async def explain(
    db: asyncpg.Connection, where: JobFilter, cursor: int | None, *, query: str = LIST_JOBS
) -> dict[str, Any]:
    raw = await db.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, *where.params(), cursor, 51
    )
    return json.loads(raw)[0]


def scans(plan: dict[str, Any]) -> list[str]:
    found = [f"{plan['Node Type']} {plan.get('Scan Direction', '')} {plan.get('Index Name', '')}"]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def test_a_page_of_a_million_jobs_walks_the_primary_key(db):
    await db.execute(
        """INSERT INTO jobrunner_jobs (state, queue, worker, args, tags, completed_at)
           SELECT CASE WHEN i % 10 = 0 THEN 'discarded' ELSE 'completed' END::jobrunner_job_state,
                  'q' || (i % 4), 'w' || (i % 50), jsonb_build_object('user_id', i % 1000),
                  CASE WHEN i % 20 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END, now()
           FROM generate_series(1, $1) AS i""",
        ROWS,
    )
    await db.execute("ANALYZE jobrunner_jobs")
    cases = {
        "newest": (JobFilter(), None),
        "deep page": (JobFilter(), ROWS // 2),
        "state": (JobFilter.build(state="discarded"), ROWS // 3),
        "queue and tag": (JobFilter.build(queue="q0", tags=["vip"]), None),
        "args": (JobFilter.build(args={"user_id": 500}), None),
    }
    timings: dict[str, float] = {}
    for name, (where, before) in cases.items():
        result = await explain(db, where, before)
        assert "Index Scan Backward jobrunner_jobs_pkey" in scans(result["Plan"]), name
        assert result["Plan"]["Actual Rows"] == 51, name
        timings[name] = result["Execution Time"]
    print("list query, ms:", timings)
    # A filter matching one row in ten or twenty: a page well under 100 ms.
    assert max(t for name, t in timings.items() if name != "args") < 100, timings
    # Oldest first: the same walk, up the primary key; a substring of the args likewise.
    oldest = await explain(
        db, JobFilter.build(state="discarded"), ROWS // 3, query=LIST_JOBS_OLDEST
    )
    assert "Index Scan Forward jobrunner_jobs_pkey" in scans(oldest["Plan"])
    assert oldest["Plan"]["Actual Rows"] == 51 and oldest["Execution Time"] < 100, oldest
    text = await explain(db, JobFilter.build(args_text='"user_id": 7'), None)
    assert "Index Scan Backward jobrunner_jobs_pkey" in scans(text["Plan"])
    assert text["Plan"]["Actual Rows"] == 51 and text["Execution Time"] < 2000, text
    print("oldest, args text, ms:", oldest["Execution Time"], text["Execution Time"])
    # One row in a thousand (args): the walk is a thousand rows per row shown, still bounded
    # by the page (about 50,000 index entries), not by the table.
    assert timings["args"] < 2000, timings
