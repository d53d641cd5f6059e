"""FastAPI with SQLAlchemy's AsyncSession: the order and its receipt job commit together.

uvicorn examples.fastapi_app:app        # then: curl -XPOST localhost:8000/orders?item=book
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import jobrunner

from .workers import ORDERS, send_receipt


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with jobrunner.connect() as client:  # JOBRUNNER_DATABASE_URL, else embedded
        engine = create_async_engine(client.dsn.replace("postgresql://", "postgresql+asyncpg://"))
        async with engine.begin() as conn:
            await conn.execute(text(ORDERS))
        app.state.jobs, app.state.sessions = client, async_sessionmaker(engine)
        yield
        await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/orders")
async def create_order(item: str) -> dict[str, int]:
    session: AsyncSession
    async with app.state.sessions() as session, session.begin():
        order_id = (
            await session.execute(
                text("INSERT INTO example_orders (item) VALUES (:item) RETURNING id"),
                {"item": item},
            )
        ).scalar_one()
        job = await app.state.jobs.insert(send_receipt.new({"order_id": order_id}), conn=session)
        if item == "out-of-stock":  # fails after the insert: the job rolls back too
            raise HTTPException(409, "out of stock")
    return {"order_id": order_id, "job_id": job.id}
