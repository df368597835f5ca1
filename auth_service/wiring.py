"""Wiring of the passkey, TOTP and MFA services (called from the lifespan's context build)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.config import AuthSettings
from auth_service.keys.database import DatabaseKeyStore
from auth_service.keys.secret_box import SecretBox, decode_key, dev_secret_key
from auth_service.keys.store import DirectoryStore, KeyStore
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.recovery_codes import RecoveryCodeRepository
from auth_service.repositories.totp import TotpRepository
from auth_service.services.authentication import Authenticator
from auth_service.services.second_factor.factors import AccountFactors
from auth_service.services.second_factor.second_step import MfaService
from auth_service.services.second_factor.totp import TotpService
from auth_service.services.webauthn.passkeys import PasskeyService
from auth_service.stores.challenges import ChallengeStore
from auth_service.stores.rate_limit import Limit, RateLimiter
from shared.runtime.redis_topology import RedisClient

# The server keeps a challenge a little longer than the browser's `timeout`,
# so a response sent in the last second still finds it.
_CHALLENGE_SLACK_SECONDS = 30


def totp_secret_box(settings: AuthSettings) -> SecretBox:
    """The box TOTP secrets are sealed in: TOTP_ENCRYPTION_KEY, or (never in
    production, the settings refuse that) a development key in KEY_DIR."""
    configured = settings.totp_encryption_key.get_secret_value()
    if configured:
        return SecretBox(decode_key(configured))
    return SecretBox(dev_secret_key(settings.key_dir))


# Development's key-encryption key, beside its TOTP key (never in production).
DEV_KEK_FILE = "key-encryption.key"


def key_store(settings: AuthSettings, engine: AsyncEngine | None) -> KeyStore:
    """The signing keys' store that KEY_STORE names (the service and the CLI alike).

    KEY_STORE=database seals under KEY_ENCRYPTION_KEY, or (never in
    production, the settings refuse that) a development key in KEY_DIR; it
    needs the auth database's engine.
    """
    if settings.key_store == "directory":
        return DirectoryStore(settings.key_dir)
    if engine is None:
        raise ValueError("KEY_STORE=database needs the auth database's engine")
    configured = settings.key_encryption_key.get_secret_value()
    kek = decode_key(configured) if configured else dev_secret_key(settings.key_dir, DEV_KEK_FILE)
    return DatabaseKeyStore(engine, kek)


def build_second_factor(
    settings: AuthSettings,
    *,
    redis: RedisClient,
    sessions: async_sessionmaker[AsyncSession],
    credentials: CredentialRepository,
    totp: TotpRepository,
    factors: AccountFactors,
    identities: IdentityRepository,
    authenticator: Authenticator,
    limiter: RateLimiter,
) -> tuple[PasskeyService, TotpService, MfaService]:
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
        factors=factors,
        limiter=limiter,
        options_limit=Limit(
            "passkey-options-ip",
            settings.passkey_options_ip_limit,
            settings.passkey_options_ip_window_seconds,
        ),
    )
    totp_service = TotpService(
        totp=totp,
        identities=identities,
        factors=factors,
        authenticator=authenticator,
        box=totp_secret_box(settings),
        # The name authenticator apps show above the code.
        issuer_name=settings.webauthn_rp_name,
        limiter=limiter,
        limits=(
            Limit(
                "totp-account", settings.totp_account_limit, settings.totp_account_window_seconds
            ),
            Limit(
                "totp-account-day",
                settings.totp_account_daily_limit,
                settings.totp_account_daily_window_seconds,
            ),
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
        factors=factors,
        totp=totp_service,
        mfa_ttl=settings.mfa_token_ttl_seconds,
        code_count=settings.recovery_code_count,
    )
    return passkeys, totp_service, mfa
