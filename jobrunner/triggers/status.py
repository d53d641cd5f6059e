"""What `jobrunner triggers list` and `jobrunner triggers sql` show: each trigger's state,
and a `CREATE TRIGGER` that enqueues for it from PostgreSQL itself."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobrunner.db import queries as _db_queries
from jobrunner.db.queries import triggers as _queries
from jobrunner.triggers.base import TriggerError
from jobrunner.triggers.definition import PER_RECORD, Trigger, registered
from jobrunner.triggers.scanning import Inserter


@dataclass(frozen=True, slots=True)
class TriggerStatus:
    """One trigger as the CLI lists it."""

    name: str
    model: str
    queue: str
    schedule: str | None
    last_slot: datetime | None
    matched: int | None
    incomplete: int

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "queue": self.queue,
            "schedule": self.schedule,
            "last_slot": None if self.last_slot is None else self.last_slot.isoformat(),
            "matched": self.matched,
            "incomplete": self.incomplete,
        }


async def statuses(client: Inserter, pool: Any) -> list[TriggerStatus]:
    """Every registered trigger: its model, schedule, last cron slot, records matching its
    `where` now (None for an on-demand trigger without one) and incomplete jobs."""
    triggers = sorted(registered().values(), key=lambda t: t.name)
    slots = await _db_queries.cron_progress(pool, [t.cron_key for t in triggers])
    incomplete = await _queries.count_incomplete_by_worker(pool, [t.name for t in triggers])
    matched = await asyncio.gather(*(_matched(client, t) for t in triggers))
    return [
        TriggerStatus(
            name=t.name,
            model=t.adapter.label,
            queue=t.queue,
            schedule=None if t.cron is None else f"{t.cron} ({t.timezone})",
            last_slot=slots.get(t.cron_key),
            matched=count,
            incomplete=incomplete[t.name],
        )
        for t, count in zip(triggers, matched, strict=True)
    ]


async def _matched(client: Inserter, trigger: Trigger) -> int | None:
    if not trigger.adapter.has_where:
        return None
    return await trigger.adapter.count_matching(dsn=lambda: client.dsn)


_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


def create_trigger_sql(trigger: Trigger) -> str:
    """A `CREATE TRIGGER` (and its function) on the model's table that enqueues the
    trigger's job for each row inserted or updated so that it matches `where`, through
    `jobrunner_insert_job` in the writer's transaction (one incomplete job per row, as
    `new_for` and the scans). TriggerError if `where` cannot be written in SQL."""
    adapter = trigger.adapter
    if trigger.unique != PER_RECORD:
        raise TriggerError(
            f"trigger {trigger.name!r} has its own unique=; the SQL enqueues with the "
            "default one (one incomplete job per record)"
        )
    condition = adapter.where_sql()
    function = "jobrunner_enqueue_" + _IDENTIFIER.sub("_", trigger.name.lower()).strip("_")
    quoted_table = '"' + adapter.table.replace('"', '""') + '"'
    pk = f'to_jsonb(NEW."{adapter.pk_name}")'
    worker, queue = _literal(trigger.name), _literal(trigger.queue)
    return f"""-- enqueue {trigger.name} for each {adapter.label} written so that it matches where
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {condition} THEN
        PERFORM jobrunner_insert_job(
            {worker},
            jsonb_build_object('pk', {pk}),
            queue => {queue},
            priority => {trigger.priority},
            max_attempts => {trigger.max_attempts},
            unique_key => jobrunner_trigger_key({worker}, {pk})
        );
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER {function}
    AFTER INSERT OR UPDATE ON {quoted_table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
