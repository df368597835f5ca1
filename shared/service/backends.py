"""The backends every service holds: a database engine, a Redis pool, an HTTP client.

Each service builds them in its own context (with its own settings) and the
scaffold (`shared/service/app.py`) probes them for `/readyz` and closes them
at shutdown, in one place for both services.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.reads import ReadSource
from shared.http.health import Check
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisClient, close_client
from shared.runtime.settings import CommonSettings

__all__ = ["Backends", "backend_checks", "close_backends", "make_durable_writes", "make_redis"]


class Backends(Protocol):
    """What a service context holds that the scaffold needs (both contexts do)."""

    engine: AsyncEngine
    # Single-row reads (shared.db.reads): a pool of their own on PostgreSQL.
    reads: ReadSource
    redis: RedisClient
    http: httpx.AsyncClient


def make_redis(settings: CommonSettings) -> RedisClient:
    """The service's Redis client, for whichever topology the settings name
    (one server, Sentinel or Cluster: `shared/runtime/redis_topology.py`).

    Bounded timeouts: a Redis that stops answering surfaces as an error (503,
    `shared/http/unavailable.py`) within seconds instead of hanging requests.
    """
    return settings.redis_topology.client()


def make_durable_writes(settings: CommonSettings, redis: RedisClient) -> DurableWrites:
    """Security writes on `redis`, confirmed by `REDIS_MIN_REPLICAS_ACK` replicas."""
    return DurableWrites(
        redis,
        settings.redis_topology,
        replicas=settings.redis_min_replicas_ack,
        timeout_ms=settings.redis_wait_timeout_ms,
    )


def backend_checks(ctx: Backends) -> dict[str, Check]:
    """`/readyz`'s probes: the database answers a query, Redis a PING."""

    async def database() -> None:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await ctx.redis.ping()

    return {"database": database, "redis": redis}


async def close_backends(ctx: Backends) -> None:
    """Close the HTTP client and the Redis pool, dispose of the engines."""
    await ctx.http.aclose()
    await close_client(ctx.redis)
    await ctx.reads.aclose()
    await ctx.engine.dispose()
