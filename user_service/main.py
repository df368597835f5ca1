"""The user service: `create_app(settings)` and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text

from shared.access.bearer import BearerAuthenticator
from shared.access.revocation import RedisRevocationChecker, revocation_channel
from shared.access.revocation_feed import SubscribedRevocationChecker
from shared.db.engine import make_engine, make_sessionmaker
from shared.http.cors import install_cors
from shared.http.health import Check, health_router
from shared.http.middleware import RequestContextMiddleware
from shared.http.problems import install_problem_handlers
from shared.http.routes import add_routes
from shared.http.unavailable import DEPENDENCY_ERRORS
from shared.observability.setup import Observability
from shared.observability.tracing import FASTAPI_TELEMETRY_OFF
from shared.runtime.heap import settle_after_startup, thaw
from shared.runtime.preflight import prepare_or_release
from shared.tokens.jwks import JWKSClient
from shared.tokens.verify import TokenVerifier
from user_service.api import audit as audit_api
from user_service.api import internal, users
from user_service.config import UserSettings
from user_service.context import UserContext
from user_service.migrate import MIGRATIONS
from user_service.repositories.profiles import ProfileRepository

_log = logging.getLogger("user_service")


def _build_context(
    settings: UserSettings,
    transport: httpx.AsyncBaseTransport | None,
    obs: Observability | None = None,
) -> UserContext:
    engine = make_engine(settings.database_url)
    redis = Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
    )
    http = httpx.AsyncClient(timeout=settings.jwks_timeout_seconds, transport=transport)
    jwks = JWKSClient(
        url=settings.jwks_url,
        http=http,
        cache_ttl_seconds=settings.jwks_cache_ttl_seconds,
        min_refetch_interval_seconds=settings.jwks_min_refetch_seconds,
        timeout_seconds=settings.jwks_timeout_seconds,
        on_fetch=obs.on_jwks_fetch if obs else None,  # idp_jwks_refresh_total
    )
    # Revocations come from the auth service's pub/sub channel, with a Redis
    # check per request whenever that feed is not provably live
    # (shared/access/revocation_feed.py; bench/README.md, target 1).
    revocations = SubscribedRevocationChecker(
        RedisRevocationChecker(redis, prefix=settings.redis_prefix),
        redis_url=settings.redis_url,
        channel=revocation_channel(settings.redis_prefix),
    )
    bearer = BearerAuthenticator(
        verifier=TokenVerifier(
            key_source=jwks,
            expected_issuer=settings.issuer,
            expected_audience=settings.api_audience,
            leeway_seconds=settings.token_leeway_seconds,
        ),
        revocation=revocations,
        realm="user-service",
    )
    return UserContext(
        settings=settings,
        engine=engine,
        redis=redis,
        http=http,
        jwks=jwks,
        profiles=ProfileRepository(make_sessionmaker(engine)),
        bearer=bearer,
        revocations=revocations,
    )


def create_app(
    settings: UserSettings | None = None,
    *,
    jwks_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the user service.

    Args:
        settings: validated settings; read from the environment when omitted.
        jwks_transport: an httpx transport for JWKS fetches (tests wire the
            auth app in-process with it).
    """
    settings = settings or UserSettings()
    logging.basicConfig(level=settings.log_level)
    obs = Observability(service_name=settings.service_name, settings=settings, issuer=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = _build_context(settings, jwks_transport, obs)
        # Development: `upgrade head`. Production: never touch the schema;
        # refuse to start unless it is at head and Redis is a real one.
        await prepare_or_release(
            engine=ctx.engine,
            redis=ctx.redis,
            http=[ctx.http],
            migrations=MIGRATIONS,
            production=settings.is_production,
        )
        app.state.ctx = ctx
        # After the migrations: the audit writer needs its table.
        await obs.start(engine=ctx.engine, redis=ctx.redis, http=[ctx.http])
        if ctx.revocations is not None:
            await ctx.revocations.start()
        settle_after_startup()  # shared/runtime/heap.py: no full-GC pauses over start-up's objects
        try:
            yield
        finally:
            thaw()
            if ctx.revocations is not None:
                await ctx.revocations.aclose()
            await obs.stop()
            await ctx.http.aclose()
            await ctx.redis.aclose()
            await ctx.engine.dispose()

    app = FastAPI(
        title="User service",
        version="0.1.0",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY_OFF,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.service_name = settings.service_name
    install_problem_handlers(app, unavailable=DEPENDENCY_ERRORS)
    add_routes(app, users.router, internal.router)

    def checks() -> dict[str, Check]:
        ctx: UserContext = app.state.ctx

        async def db() -> None:
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        async def redis() -> None:
            await ctx.redis.ping()

        return {"database": db, "redis": redis}

    add_routes(app, health_router(checks))
    # Inside the request-context middleware: preflights get a request id too.
    install_cors(app, settings.cors_origin_list)
    app.add_middleware(
        RequestContextMiddleware,
        trusted_proxies=settings.proxy_networks,
        max_body_bytes=settings.max_body_bytes,
        hsts=settings.issuer_is_https,
    )
    add_routes(app, audit_api.router)
    # Last: metrics and spans wrap all of the above (one middleware when both
    # are on, shared/observability/server_span.py); /metrics is added.
    obs.instrument_app(app)
    return app
