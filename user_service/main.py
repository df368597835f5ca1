"""The user service: its context, what it runs while serving, and `create_app(settings)`.

What both services share (the app, middleware, health, the lifespan) is
`shared/service/app.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from shared.access.bearer import BearerAuthenticator
from shared.access.key_revocation import DenyRevokedKeys, RevokedKeys
from shared.access.revocation import RedisRevocationChecker, revocation_channel
from shared.access.revocation_feed import SubscribedRevocationChecker
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.reads import make_reads
from shared.observability.setup import Observability
from shared.service.app import build_app
from shared.service.backends import make_redis
from shared.tokens.jwks import JWKSClient
from shared.tokens.verify import KeysUnavailable, TokenVerifier
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
    reads = make_reads(engine)
    redis = make_redis(settings)
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
        connect=settings.redis_topology.subscriber_factory(),
        channel=revocation_channel(settings.redis_prefix),
    )
    # A key revoked in an emergency is refused within a second, whatever the
    # JWKS cache still holds; the set is then refetched so that the key
    # replacing it verifies at once (shared/access/key_revocation.py).
    revoked_keys = RevokedKeys(
        redis, prefix=settings.redis_prefix, on_change=lambda _kids: _refetch_keys(jwks)
    )
    bearer = BearerAuthenticator(
        verifier=TokenVerifier(
            key_source=DenyRevokedKeys(jwks, revoked_keys),
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
        reads=reads,
        redis=redis,
        http=http,
        jwks=jwks,
        profiles=ProfileRepository(make_sessionmaker(engine), reads),
        bearer=bearer,
        revocations=revocations,
        revoked_keys=revoked_keys,
    )


# After a key revocation the auth replicas reload their keys within a poll
# (0.25 s) of reading it, as this service does: refetch at once and again
# after this, so a first fetch that raced their reload is corrected.
_REFETCH_AGAIN_AFTER_SECONDS = 1.0


async def _refetch_keys(jwks: JWKSClient) -> None:
    try:
        await jwks.refresh()
        await asyncio.sleep(_REFETCH_AGAIN_AFTER_SECONDS)
        await jwks.refresh()
    except KeysUnavailable:
        _log.warning("JWKS refetch after a key revocation failed")


@asynccontextmanager
async def _running(ctx: UserContext, _obs: Observability) -> AsyncIterator[None]:
    """What the user service runs while it serves: the revocation feed, revoked keys."""
    if ctx.revocations is not None:
        await ctx.revocations.start()
    if ctx.revoked_keys is not None:
        await ctx.revoked_keys.start()
    try:
        yield
    finally:
        if ctx.revoked_keys is not None:
            await ctx.revoked_keys.aclose()
        if ctx.revocations is not None:
            await ctx.revocations.aclose()


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
    return build_app(
        settings,
        service_name=settings.service_name,
        title="User service",
        issuer=False,
        migrations=MIGRATIONS,
        build_context=lambda obs: _build_context(settings, jwks_transport, obs),
        routers=[users.router, internal.router, audit_api.router],
        running=_running,
    )
