"""Wiring of the passkey and MFA services (called from the lifespan's context build)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.config import AuthSettings
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.recovery_codes import RecoveryCodeRepository
from auth_service.services.authentication import Authenticator
from auth_service.services.second_factor.second_step import MfaService
from auth_service.services.webauthn.passkeys import PasskeyService
from auth_service.stores.challenges import ChallengeStore
from auth_service.stores.rate_limit import Limit, RateLimiter
from shared.runtime.redis_topology import RedisClient

# The server keeps a challenge a little longer than the browser's `timeout`,
# so a response sent in the last second still finds it.
_CHALLENGE_SLACK_SECONDS = 30


def build_second_factor(
    settings: AuthSettings,
    *,
    redis: RedisClient,
    sessions: async_sessionmaker[AsyncSession],
    credentials: CredentialRepository,
    identities: IdentityRepository,
    authenticator: Authenticator,
    limiter: RateLimiter,
) -> tuple[PasskeyService, MfaService]:
    rp = settings.relying_party
    challenges = ChallengeStore(
        redis,
        prefix=settings.redis_prefix,
        challenge_ttl=settings.webauthn_timeout_seconds + _CHALLENGE_SLACK_SECONDS,
        mfa_ttl=settings.mfa_token_ttl_seconds,
    )
    passkeys = PasskeyService(
        rp=rp,
        credentials=credentials,
        identities=identities,
        challenges=challenges,
        authenticator=authenticator,
        limiter=limiter,
        options_limit=Limit(
            "passkey-options-ip",
            settings.passkey_options_ip_limit,
            settings.passkey_options_ip_window_seconds,
        ),
    )
    mfa = MfaService(
        rp=rp,
        credentials=credentials,
        codes=RecoveryCodeRepository(sessions),
        identities=identities,
        challenges=challenges,
        passkeys=passkeys,
        authenticator=authenticator,
        mfa_ttl=settings.mfa_token_ttl_seconds,
        code_count=settings.recovery_code_count,
    )
    return passkeys, mfa
