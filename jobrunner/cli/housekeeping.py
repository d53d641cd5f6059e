"""Housekeeping from the command line: a one-off prune of finished jobs, and a reindex.

(`jobrunner jobs delete` deletes jobs by id or by filter.)"""

from __future__ import annotations

from typing import Annotated

import typer

from jobrunner.cli.app import ConfigOption, DsnOption, SchemaOption, app, fail, load_settings
from jobrunner.cli.common import with_client
from jobrunner.client import Client
from jobrunner.core.errors import ConfigError
from jobrunner.core.limits import parse_period
from jobrunner.db import queries as _queries
from jobrunner.plugins.pruner import PRUNABLE_STATES
from jobrunner.plugins.reindexer import Reindexer

# What "never" is for a state left out: an age no job reaches (a thousand years).
_NEVER_S = 1_000 * 365 * 86_400.0
BATCH = 10_000


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Age since the job finished, e.g. 7d, 12h, 30m or seconds."
        ),
    ],
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="completed, cancelled or discarded; repeat; default all."),
    ] = None,
    dsn: DsnOption = None,
    config: ConfigOption = None,
    schema: SchemaOption = None,
) -> None:
    """Delete finished jobs older than an age now, as the pruner does on its schedule."""
    try:
        age_s = parse_period(older_than)
    except ConfigError:
        fail(f"--older-than must be a duration like 7d, 12h or 30m, got {older_than!r}")
    states = list(dict.fromkeys(state or PRUNABLE_STATES))
    unknown = [s for s in states if s not in PRUNABLE_STATES]
    if unknown:
        fail(f"--state takes {', '.join(PRUNABLE_STATES)}, got {', '.join(unknown)}")
    settings = load_settings(config, database_url=dsn, schema=schema)
    ages = {s: (age_s if s in states else _NEVER_S) for s in PRUNABLE_STATES}
    pruned = with_client(settings, lambda client: _prune(client, ages))
    detail = ", ".join(f"{s} {pruned.get(s, 0)}" for s in states)
    typer.echo(f"pruned {sum(pruned.values())} jobs finished more than {older_than} ago ({detail})")


async def _prune(client: Client, ages: dict[str, float]) -> dict[str, int]:
    total: dict[str, int] = {}
    while True:
        batch = await _queries.prune_jobs(
            client.pool,
            completed_s=ages["completed"],
            cancelled_s=ages["cancelled"],
            discarded_s=ages["discarded"],
            limit=BATCH,
        )
        for name, count in batch.items():
            total[name] = total.get(name, 0) + count
        if sum(batch.values()) < BATCH:
            return total


@app.command()
def reindex(
    dsn: DsnOption = None, config: ConfigOption = None, schema: SchemaOption = None
) -> None:
    """Rebuild the jobs table's indexes now, concurrently (what the reindexer does)."""
    settings = load_settings(config, database_url=dsn, schema=schema)

    async def run(client: Client) -> list[str]:
        reindexer = Reindexer(
            client.pool,
            schedule="0 0 * * *",
            interval_s=60,
            timeout_s=settings.reindex_timeout_s,
        )
        return await reindexer.run()

    rebuilt = with_client(settings, run)
    typer.echo(f"rebuilt {len(rebuilt)} indexes: {', '.join(rebuilt)}")
