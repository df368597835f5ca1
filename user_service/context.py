"""The long-lived objects of one user service instance, built in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.access.bearer import BearerAuthenticator
from shared.access.key_revocation import RevokedKeys
from shared.access.revocation_feed import SubscribedRevocationChecker
from shared.db.reads import ReadSource
from shared.runtime.redis_topology import RedisClient
from shared.tokens.jwks import JWKSClient
from user_service.config import UserSettings
from user_service.repositories.profiles import ProfileRepository


@dataclass
class UserContext:
    settings: UserSettings
    engine: AsyncEngine
    reads: ReadSource
    redis: RedisClient
    http: httpx.AsyncClient
    jwks: JWKSClient
    profiles: ProfileRepository
    bearer: BearerAuthenticator
    # The pub/sub revocation feed behind `bearer` (started and closed by the lifespan).
    revocations: SubscribedRevocationChecker | None = None
    # Emergency key revocations behind `bearer`'s key source (polled by the lifespan).
    revoked_keys: RevokedKeys | None = None
