"""Test helpers for triggers: one scheduled scan, run in the test."""

from __future__ import annotations

from jobrunner.client import Client
from jobrunner.triggers import ScanResult, Trigger, lookup, scan


async def run_trigger_scan(client: Client, trigger: Trigger | str) -> ScanResult:
    """Run one scan of `trigger` now, as its cron slot would: a job per record matching its
    `where` (none for a record whose job is still incomplete), inserted through `client`.
    Then `drain_queue(client, trigger.queue)` runs them.

    Example:
        >>> (await run_trigger_scan(client, process_order)).inserted
        3
        >>> await assert_enqueued(client, worker=process_order, args={"pk": order.id})
    """
    return await scan(client, lookup(trigger) if isinstance(trigger, str) else trigger)
