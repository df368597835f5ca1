"""Baseline: the DB-read floor, the least any FastAPI profile read on PostgreSQL does.

A bare FastAPI app and an asyncpg pool: `GET /profiles/{id}` runs one
`SELECT ... WHERE id = $1` by primary key on a table shaped like the user
service's `profiles` and returns the row as JSON. No token, no revocation
check, no ORM, no middleware: what an authenticated profile read cannot go
below on this database and core (target 1 divides ours by it).

Environment:
    BENCH_FLOOR_DSN: a plain postgresql:// DSN of a database of its own.
    BENCH_FLOOR_ID_FILE: where the start-up writes the id of the row it inserted.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    id UUID PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    email VARCHAR(320) NOT NULL,
    date_of_birth DATE NOT NULL,
    job_title VARCHAR(200) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
)
"""
_READ = (
    "SELECT id, name, email, date_of_birth, job_title, created_at, updated_at "
    "FROM profiles WHERE id = $1"
)


def create_app() -> FastAPI:
    dsn = os.environ["BENCH_FLOOR_DSN"]
    id_file = Path(os.environ.get("BENCH_FLOOR_ID_FILE", "./db_read_floor.id"))
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The same pool size as the services' engine (shared/db/engine.py).
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        now = dt.datetime.now(dt.UTC)
        profile_id = uuid.uuid4()
        async with pool.acquire() as conn:
            await conn.execute(_SCHEMA)
            await conn.execute(
                "INSERT INTO profiles VALUES ($1, $2, $3, $4, $5, $6, $6)",
                profile_id,
                "Bench User",
                "bench@example.com",
                dt.date(1980, 4, 14),
                "Engineer",
                now,
            )
        id_file.write_text(str(profile_id))  # noqa: ASYNC240 - once, at start-up
        state["pool"] = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/profiles/{profile_id}")
    async def read(profile_id: uuid.UUID) -> dict[str, Any]:
        row = await state["pool"].fetchrow(_READ, profile_id)
        if row is None:
            raise HTTPException(404)
        return {
            "id": str(row["id"]),
            "name": row["name"],
            "email": row["email"],
            "date_of_birth": row["date_of_birth"].isoformat(),
            "job_title": row["job_title"],
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }

    return app
