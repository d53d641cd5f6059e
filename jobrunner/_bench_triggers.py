"""The trigger the benchmark's scan case runs (`--app jobrunner._bench_triggers`): every
second, one job per `bench_records` row still pending; the job marks it done."""

from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobrunner._bench_workers import QUEUE
from jobrunner.core.job import Job
from jobrunner.triggers import trigger

NAME = "bench.trigger"
TABLE = """
CREATE TABLE IF NOT EXISTS bench_records (id bigint PRIMARY KEY, status text NOT NULL);
TRUNCATE bench_records;
"""
# `rows` rows ($1), one in every $2 pending: the matching rows spread over the whole table.
FILL = """
INSERT INTO bench_records
SELECT g, CASE WHEN g % $2 = 0 THEN 'pending' ELSE 'done' END FROM generate_series(1, $1) g
"""


class Base(DeclarativeBase):
    pass


class BenchRecord(Base):
    __tablename__ = "bench_records"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    status: Mapped[str] = mapped_column(String)


@trigger(BenchRecord, where=BenchRecord.status == "pending", cron="* * * * * *", queue=QUEUE,
         name=NAME)  # fmt: skip
async def mark_done(record: BenchRecord, job: Job) -> None:
    record.status = "done"
