"""Declarative triggers on the application's own records (SQLAlchemy 2 or Django models).

from jobrunner.triggers import trigger

@trigger(Order, where=Order.status == "pending", cron="*/5 * * * *", name="orders.process")
async def process_order(order: Order, job: Job) -> None:
    order.status = "done"

await client.insert(process_order.new_for(order), conn=session)   # on demand
"""

from jobrunner.triggers.base import TriggerError
from jobrunner.triggers.definition import PER_RECORD, Trigger, lookup, registered, trigger
from jobrunner.triggers.scanning import ScanResult, scan
from jobrunner.triggers.status import TriggerStatus, create_trigger_sql, statuses

__all__ = [
    "PER_RECORD",
    "ScanResult",
    "Trigger",
    "TriggerError",
    "TriggerStatus",
    "create_trigger_sql",
    "lookup",
    "registered",
    "scan",
    "statuses",
    "trigger",
]
