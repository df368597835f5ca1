"""What a service checks about its backends before it serves.

Settings validation (`shared.runtime.settings`) refuses unsafe configuration; this
module refuses unsafe *backends*, which only a live connection reveals: a
schema that is not at the migration head, or an embedded fake Redis standing
in for the real one. Development gets its schema upgraded instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.migrations import ServiceMigrations, check_schema, upgrade_to_head
from shared.runtime.redis_topology import RedisClient
from shared.runtime.settings import ProductionConfigError

__all__ = ["prepare_backends", "prepare_or_release", "redis_problem"]


async def redis_problem(redis: RedisClient) -> str | None:
    """Say why `redis` is not a production Redis, or None when it is.

    The local cluster's embedded server (fakeredis) keeps everything in the
    memory of the `make run` process and answers no INFO command; every real
    Redis (and Valkey, and the managed services) does, with its version.
    """
    try:
        info = await redis.info("server")
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            return (
                "REDIS_URL points at an embedded or fake Redis (it has no INFO command); "
                "production needs a real Redis with persistence"
            )
        return f"REDIS_URL refused INFO ({type(exc).__name__}); cannot tell what it is"
    except (RedisError, OSError) as exc:
        return f"REDIS_URL could not be checked ({type(exc).__name__}: {exc})"
    if "redis_version" not in info:
        return "REDIS_URL answers INFO without a redis_version; it is not a real Redis"
    return None


async def prepare_backends(
    *, engine: AsyncEngine, redis: RedisClient, migrations: ServiceMigrations, production: bool
) -> None:
    """Upgrade the schema (development), or refuse unsafe backends (production).

    Raises:
        ProductionConfigError: production, and this code cannot run on the schema, the
            database cannot be reached to tell, or Redis is not a real Redis.
            The message lists every problem found, not only the first.
    """
    if not production:
        await upgrade_to_head(engine, migrations)
        return
    problems: list[str] = []
    try:
        schema = await check_schema(engine, migrations)
    except (SQLAlchemyError, OSError) as exc:
        schema = f"DATABASE_URL could not be checked ({type(exc).__name__})"
    if schema is not None:
        problems.append(schema)
    redis_issue = await redis_problem(redis)
    if redis_issue is not None:
        problems.append(redis_issue)
    if problems:
        raise ProductionConfigError("refusing to start in production: " + "; ".join(problems))


async def prepare_or_release(
    *,
    engine: AsyncEngine,
    redis: RedisClient,
    http: Sequence[httpx.AsyncClient],
    migrations: ServiceMigrations,
    production: bool,
) -> None:
    """`prepare_backends`, closing the service's pools if start-up is refused,
    so a refused process exits without dangling connections."""
    try:
        await prepare_backends(
            engine=engine, redis=redis, migrations=migrations, production=production
        )
    except BaseException:
        for client in http:
            await client.aclose()
        await redis.aclose()
        await engine.dispose()
        raise
