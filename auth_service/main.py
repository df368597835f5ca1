"""The auth service: its context, what it runs while serving, and `create_app(settings)`.

What both services share (the app, middleware, health, the lifespan) is
`shared/service/app.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from auth_service.api import (
    account,
    authorize,
    introspection,
    page,
    passkeys,
    passwords,
    registration,
    revocation,
    sessions,
    tokens,
    totp,
    userinfo,
    wellknown,
)
from auth_service.api import audit as audit_api
from auth_service.api import email as email_api
from auth_service.api import mfa as mfa_api
from auth_service.config import AuthSettings
from auth_service.context import AuthContext
from auth_service.keys import KeyRing
from auth_service.keys.rotation import RotationPolicy, RotationSchedule
from auth_service.keys.store import DirectoryStore
from auth_service.mail import Outbox, SmtpSender
from auth_service.migrate import MIGRATIONS
from auth_service.repositories.accounts import AccountRepository
from auth_service.repositories.active_roles import CHANNEL as IDENTITY_CHANGES
from auth_service.repositories.active_roles import ActiveRoles
from auth_service.repositories.clients import ClientRepository
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.recovery_codes import RecoveryCodeRepository
from auth_service.repositories.second_factors import SecondFactorReads
from auth_service.repositories.totp import TotpRepository
from auth_service.services.authentication import Authenticator, LoginLimits
from auth_service.services.lifecycle import (
    AccountDeletion,
    AccountExport,
    ChangeLimits,
    EmailLifecycle,
    PasswordLifecycle,
    ResetLimits,
    VerificationLimits,
    VerificationMailer,
)
from auth_service.services.oauth.authorization import AuthorizationService
from auth_service.services.oauth.client_credentials import ClientCredentialsGrant
from auth_service.services.oauth.introspection import Introspector
from auth_service.services.oauth.registry import ClientRegistry
from auth_service.services.oauth.userinfo import UserInfo
from auth_service.services.password_policy import PasswordPolicy
from auth_service.services.passwords import Argon2Params, PasswordHasher
from auth_service.services.registration import RegistrationService
from auth_service.services.revocation import TokenRevoker
from auth_service.services.second_factor.factors import AccountFactors
from auth_service.services.tokens import TokenIssuer
from auth_service.stores.authorization import AuthorizationStore
from auth_service.stores.one_time_tokens import OneTimeTokens
from auth_service.stores.rate_limit import Limit, RateLimiter
from auth_service.stores.sessions import SessionStore
from auth_service.wiring import build_second_factor, key_store
from shared.access.bearer import BearerAuthenticator
from shared.access.key_revocation import DenyRevokedKeys, RevokedKeys
from shared.access.revocation import MARKER_OUTLIVES_TOKEN_SECONDS, RedisRevocationChecker
from shared.audit.events import audit_event
from shared.audit.store import AuditStore
from shared.db.change_feed import change_feed
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.reads import make_reads
from shared.observability.setup import Observability
from shared.service.app import build_app
from shared.service.backends import make_durable_writes, make_redis
from shared.tokens.verify import TokenVerifier

_log = logging.getLogger("auth_service")

# RFC 6749 §4.1.2: a code lives seconds (it only crosses one redirect). A
# pending sign-in waits for the user long enough for a passkey and a second
# factor. A spent code is remembered as long as a session could live, so a
# late replay still finds, and revokes, what it issued.
AUTHORIZATION_CODE_TTL_SECONDS = 60
AUTHORIZE_REQUEST_TTL_SECONDS = 600


def _build_context(
    settings: AuthSettings,
    transport: httpx.AsyncBaseTransport | None,
    obs: Observability | None = None,
) -> AuthContext:
    engine = make_engine(settings.database_url)
    reads = make_reads(engine)
    redis = make_redis(settings)
    # Writes whose loss in a failover would undo a security decision wait
    # for REDIS_MIN_REPLICAS_ACK replicas (shared/runtime/redis_durable.py).
    durable = make_durable_writes(settings, redis)
    # Production: no generated keys, and none that a development start made.
    store = key_store(settings, engine)
    if isinstance(store, DirectoryStore):
        # Files: read now, so a start without keys fails before anything else.
        keyring = KeyRing.load(
            settings.key_dir,
            generate_if_missing=not settings.is_production,
            allow_dev_keys=not settings.is_production,
        )
    else:
        # The database: read by `_running`, after the migrations made its table.
        keyring = KeyRing(store, allow_dev_keys=not settings.is_production)
    http = httpx.AsyncClient(
        base_url=settings.user_service_url,
        timeout=settings.user_service_timeout_seconds,
        transport=transport,
    )
    # Refreshes answer from memory what an account's roles are while the
    # identities' change feed is live (PostgreSQL reached directly only).
    identity_feed = change_feed(engine, IDENTITY_CHANGES)
    identities = IdentityRepository(
        make_sessionmaker(engine),
        reads,
        active_roles=ActiveRoles(identity_feed) if identity_feed is not None else None,
    )
    hasher = PasswordHasher(
        Argon2Params(
            time_cost=settings.argon2_time_cost,
            memory_cost_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        ),
        max_concurrent_hashes=settings.hash_concurrency,
    )
    sessions_store = SessionStore(
        redis,
        prefix=settings.redis_prefix,
        session_ttl=settings.refresh_token_ttl_seconds,
        marker_ttl=settings.access_token_ttl_seconds + MARKER_OUTLIVES_TOKEN_SECONDS,
        idle_timeout=settings.refresh_idle_timeout_seconds,
        retry_grace=settings.refresh_retry_grace_seconds,
        durable=durable,
    )
    limiter = RateLimiter(redis, prefix=settings.redis_prefix, enabled=settings.rate_limit_enabled)
    issuer = TokenIssuer(
        # Counted by kind for idp_tokens_issued_total (access, service).
        signer=obs.counting_signer(keyring) if obs else keyring,
        issuer=settings.issuer,
        audience=settings.api_audience,
        access_ttl=settings.access_token_ttl_seconds,
        service_ttl=settings.service_token_ttl_seconds,
        id_signer=keyring,
    )
    from auth_service.peers.user_service import UserServiceClient

    smtp = settings.smtp
    outbox = Outbox(SmtpSender(smtp), service=settings.service_name) if smtp else None
    # Links whose use changes an account: single use must survive a failover.
    verify_tokens = OneTimeTokens(
        redis,
        prefix=settings.redis_prefix,
        purpose="verify",
        ttl_seconds=settings.email_verify_ttl_seconds,
        durable=durable,
    )
    change_tokens = OneTimeTokens(
        redis,
        prefix=settings.redis_prefix,
        purpose="email-change",
        ttl_seconds=settings.email_verify_ttl_seconds,
        durable=durable,
    )
    verification = VerificationMailer(
        tokens=verify_tokens,
        limiter=limiter,
        limits=VerificationLimits(
            per_ip=Limit(
                "verify-resend-ip",
                settings.verify_resend_ip_limit,
                settings.verify_resend_ip_window_seconds,
            ),
            per_account=Limit(
                "verify-resend-account",
                settings.verify_resend_account_limit,
                settings.verify_resend_account_window_seconds,
            ),
        ),
        outbox=outbox,
        issuer=settings.issuer,
        mail_from=settings.mail_from,
    )
    users = UserServiceClient(http=http, token=issuer.service_token)
    policy = PasswordPolicy()
    registration_service = RegistrationService(
        identities=identities,
        hasher=hasher,
        policy=policy,
        users=users,
        limiter=limiter,
        ip_limit=Limit(
            "register-ip", settings.register_ip_limit, settings.register_ip_window_seconds
        ),
        email_limit=Limit(
            "register-email", settings.register_email_limit, settings.register_email_window_seconds
        ),
        verification=verification,
    )
    credentials = CredentialRepository(make_sessionmaker(engine), reads)
    totp_secrets = TotpRepository(make_sessionmaker(engine))
    factors = AccountFactors(
        credentials=credentials, totp=totp_secrets, any_factor=SecondFactorReads(reads)
    )
    authenticator = Authenticator(
        identities=identities,
        hasher=hasher,
        sessions=sessions_store,
        issuer=issuer,
        limiter=limiter,
        limits=LoginLimits(
            per_ip=Limit("login-ip", settings.login_ip_limit, settings.login_ip_window_seconds),
            per_account=Limit(
                "login-account", settings.login_account_limit, settings.login_account_window_seconds
            ),
            per_account_network=Limit(
                "login-account-net",
                settings.login_account_network_limit,
                settings.login_account_network_window_seconds,
            ),
            ipv4_prefix=settings.login_network_ipv4_prefix,
            ipv6_prefix=settings.login_network_ipv6_prefix,
            refresh_per_ip=Limit(
                "refresh-ip", settings.refresh_ip_limit, settings.refresh_ip_window_seconds
            ),
        ),
        require_verified_email=settings.require_verified_email,
        verification=verification,
    )
    passkeys, totp_service, mfa = build_second_factor(
        settings,
        redis=redis,
        sessions=make_sessionmaker(engine),
        credentials=credentials,
        totp=totp_secrets,
        factors=factors,
        identities=identities,
        authenticator=authenticator,
        limiter=limiter,
    )
    reset_tokens = OneTimeTokens(
        redis,
        prefix=settings.redis_prefix,
        purpose="reset",
        ttl_seconds=settings.password_reset_ttl_seconds,
        durable=durable,
    )
    password_lifecycle = PasswordLifecycle(
        identities=identities,
        authenticator=authenticator,
        hasher=hasher,
        policy=policy,
        sessions=sessions_store,
        reset_tokens=reset_tokens,
        limiter=limiter,
        limits=ResetLimits(
            per_ip=Limit("forgot-ip", settings.forgot_ip_limit, settings.forgot_ip_window_seconds),
            per_email=Limit(
                "forgot-email", settings.forgot_email_limit, settings.forgot_email_window_seconds
            ),
        ),
        outbox=outbox,
        issuer=settings.issuer,
        mail_from=settings.mail_from,
    )
    deletion = AccountDeletion(
        identities=identities,
        accounts=AccountRepository(make_sessionmaker(engine)),
        authenticator=authenticator,
        users=users,
        sessions=sessions_store,
        # Every link mailed to the account dies with it.
        one_time_tokens=(reset_tokens, verify_tokens, change_tokens),
    )
    export = AccountExport(
        identities=identities,
        credentials=credentials,
        codes=RecoveryCodeRepository(make_sessionmaker(engine)),
        sessions=sessions_store,
        audit=AuditStore(engine),
        users=users,
    )
    email_lifecycle = EmailLifecycle(
        identities=identities,
        authenticator=authenticator,
        profiles=users,
        sessions=sessions_store,
        mailer=verification,
        change_tokens=change_tokens,
        reset_tokens=reset_tokens,
        limiter=limiter,
        limits=ChangeLimits(
            per_ip=Limit(
                "email-change-ip",
                settings.email_change_ip_limit,
                settings.email_change_ip_window_seconds,
            ),
            per_account=Limit(
                "email-change-account",
                settings.email_change_account_limit,
                settings.email_change_account_window_seconds,
            ),
        ),
        outbox=outbox,
        issuer=settings.issuer,
        mail_from=settings.mail_from,
    )
    # The auth service verifies its own tokens with its own key ring: no
    # HTTP round trip to itself, same rules as every resource server.
    # Emergency key revocations (shared/access/key_revocation.py): the ring
    # stops publishing and signing with a revoked kid as soon as it is read,
    # and this service's own verification refuses it even before that.
    revoked_keys = RevokedKeys(
        redis, prefix=settings.redis_prefix, on_change=lambda kids: _keys_revoked(keyring, kids)
    )
    verifier = TokenVerifier(
        key_source=DenyRevokedKeys(keyring, revoked_keys),
        expected_issuer=settings.issuer,
        expected_audience=settings.api_audience,
    )
    bearer = BearerAuthenticator(
        verifier=verifier,
        revocation=RedisRevocationChecker(redis, prefix=settings.redis_prefix),
        realm="auth-service",
    )
    revoker = TokenRevoker(
        sessions=sessions_store,
        verifier=verifier,
        limiter=limiter,
        # Its own counter with the refresh numbers: the same clients, the
        # same flood, and revocations never eat a client's refresh budget.
        limit=Limit("revoke-ip", settings.refresh_ip_limit, settings.refresh_ip_window_seconds),
    )
    clients = ClientRegistry(clients=ClientRepository(make_sessionmaker(engine), reads))
    return AuthContext(
        settings=settings,
        engine=engine,
        reads=reads,
        identity_feed=identity_feed,
        redis=redis,
        http=http,
        keyring=keyring,
        revoked_keys=revoked_keys,
        identities=identities,
        sessions=sessions_store,
        issuer=issuer,
        registration=registration_service,
        authenticator=authenticator,
        revoker=revoker,
        bearer=bearer,
        passkeys=passkeys,
        totp=totp_service,
        mfa=mfa,
        hasher=hasher,
        passwords=password_lifecycle,
        deletion=deletion,
        export=export,
        email=email_lifecycle,
        outbox=outbox,
        clients=clients,
        client_grants=ClientCredentialsGrant(issuer=issuer),
        introspector=Introspector(
            keys=keyring,
            issuer=settings.issuer,
            default_audience=settings.api_audience,
            sessions=sessions_store,
        ),
        authorizations=AuthorizationService(
            clients=clients,
            store=AuthorizationStore(
                redis,
                prefix=settings.redis_prefix,
                request_ttl=AUTHORIZE_REQUEST_TTL_SECONDS,
                code_ttl=AUTHORIZATION_CODE_TTL_SECONDS,
                replay_ttl=settings.refresh_token_ttl_seconds,
                durable=durable,
            ),
            sessions=sessions_store,
            identities=identities,
            admission=authenticator,
            issuer=issuer,
            issuer_id=settings.issuer.rstrip("/"),
        ),
        userinfo=UserInfo(profiles=users),
        durable=durable,
    )


async def _keys_revoked(keyring: KeyRing, kids: frozenset[str]) -> None:
    """A signing key was revoked: stop using it now, then load its replacement.

    The CLI edits the key store before it publishes the revocation, so the
    reload finds the replacement without waiting for KEY_RELOAD_SECONDS.
    """
    keyring.set_revoked(kids)
    try:
        await keyring.reload()
    except Exception:
        _log.exception("signing key reload after a revocation failed; the next reload retries")


async def _reload_keys(ctx: AuthContext) -> None:
    """Pick up keys rotated by another replica or the CLI (the shared key store)."""
    while True:
        await asyncio.sleep(ctx.settings.key_reload_seconds)
        try:
            if await ctx.keyring.reload():
                _log.info("signing keys reloaded")
        except Exception:
            _log.exception("signing key reload failed; keeping the loaded keys")


async def _rotate_keys(ctx: AuthContext) -> None:
    """Scheduled rotation: every replica ticks, the one holding the lock acts."""
    settings = ctx.settings
    schedule = RotationSchedule(
        ctx.keyring.store,
        RotationPolicy(
            interval_seconds=settings.key_rotation_interval_seconds,
            activation_delay_seconds=settings.key_activation_delay_seconds,
            retire_after_seconds=settings.key_retire_after_seconds,
        ),
        redis=ctx.redis,
        lock_name=f"{settings.redis_prefix}keys:rotation-lock",
    )
    while True:
        try:
            outcome = await schedule.tick()
        except Exception:
            _log.exception("scheduled key rotation failed; the next tick retries")
        else:
            if outcome.added is not None:
                audit_event(
                    "key.rotated",
                    outcome="success",
                    service=settings.service_name,
                    kid=outcome.added.kid,
                    activates_at=int(outcome.added.activates_at),
                    scheduled=True,
                )
            if outcome.removed:
                audit_event(
                    "key.pruned",
                    outcome="success",
                    service=settings.service_name,
                    removed=len(outcome.removed),
                    kids=",".join(outcome.removed),
                )
            if outcome.added is not None or outcome.removed:
                with contextlib.suppress(Exception):  # the reload loop retries
                    await ctx.keyring.reload()
        await asyncio.sleep(settings.key_reload_seconds)


@asynccontextmanager
async def _running(ctx: AuthContext, obs: Observability) -> AsyncIterator[None]:
    """What the auth service runs while it serves: the key-age gauge, the key
    reloader and the mail outbox."""
    if not ctx.keyring.loaded:
        # KEY_STORE=database, after the migrations; a start refuses a store it
        # cannot sign from (no key, a wrong KEY_ENCRYPTION_KEY).
        await ctx.keyring.load_initial(generate_if_missing=not ctx.settings.is_production)
    obs.add_gauge(
        "idp_signing_key_age_seconds",
        "Seconds since the current signing key was created.",
        ctx.keyring.key_age_seconds,
    )
    reloader = asyncio.create_task(_reload_keys(ctx))
    await ctx.revoked_keys.start()
    feed = ctx.identity_feed
    if feed is not None:
        await feed.start()
        obs.add_gauge(
            "idp_account_memory_live",
            "1 while refreshes may answer the account read from memory (the identities' "
            "change feed is live); 0 while every refresh reads the database.",
            lambda: 1.0 if feed.live() else 0.0,
        )
    rotator = (
        asyncio.create_task(_rotate_keys(ctx))
        if ctx.settings.key_rotation_interval_seconds
        else None
    )
    smtp = ctx.settings.smtp
    if ctx.outbox is not None:
        ctx.outbox.start()
        _log.info("mail goes out through %s", smtp.redacted if smtp else "")
    else:
        _log.warning(
            "SMTP_URL is not set: no mail is sent; POST /password/forgot, "
            "/email/verify/resend and /email/change answer 503"
        )
    try:
        yield
    finally:
        for task in (reloader, rotator):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await ctx.revoked_keys.aclose()
        if ctx.identity_feed is not None:
            await ctx.identity_feed.aclose()
        if ctx.outbox is not None:
            await ctx.outbox.stop()  # what is queued still goes out
        ctx.hasher.close()
        await ctx.durable.aclose()


def create_app(
    settings: AuthSettings | None = None,
    *,
    user_service_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the auth service.

    Args:
        settings: validated settings; read from the environment when omitted.
        user_service_transport: an httpx transport for calls to the user
            service (tests wire the two apps together in-process with it).
    """
    settings = settings or AuthSettings()
    modules = (
        registration,
        tokens,
        revocation,
        introspection,
        passwords,
        account,
        email_api,
        mfa_api,
        passkeys,
        totp,
        sessions,
        authorize,
        userinfo,
        wellknown,
        page,
    )
    return build_app(
        settings,
        service_name=settings.service_name,
        title="Auth service",
        issuer=True,
        migrations=MIGRATIONS,
        build_context=lambda obs: _build_context(settings, user_service_transport, obs),
        routers=[*(module.router for module in modules), audit_api.router],
        running=_running,
    )
