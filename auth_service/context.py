"""The long-lived objects of one auth service instance, built in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.config import AuthSettings
from auth_service.keys import KeyRing
from auth_service.mail import Outbox
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.authentication import Authenticator
from auth_service.services.lifecycle import (
    AccountDeletion,
    AccountExport,
    EmailLifecycle,
    PasswordLifecycle,
)
from auth_service.services.oauth.authorization import AuthorizationService
from auth_service.services.oauth.client_credentials import ClientCredentialsGrant
from auth_service.services.oauth.introspection import Introspector
from auth_service.services.oauth.registry import ClientRegistry
from auth_service.services.oauth.userinfo import UserInfo
from auth_service.services.passwords import PasswordHasher
from auth_service.services.registration import RegistrationService
from auth_service.services.revocation import TokenRevoker
from auth_service.services.second_factor.second_step import MfaService
from auth_service.services.second_factor.totp import TotpService
from auth_service.services.tokens import TokenIssuer
from auth_service.services.webauthn.passkeys import PasskeyService
from auth_service.stores.sessions import SessionStore
from shared.access.bearer import BearerAuthenticator
from shared.access.key_revocation import RevokedKeys
from shared.db.change_feed import ChangeFeed
from shared.db.reads import ReadSource
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisClient


@dataclass
class AuthContext:
    settings: AuthSettings
    engine: AsyncEngine
    reads: ReadSource
    # Changes to identities (PostgreSQL only), for what `identities` remembers.
    identity_feed: ChangeFeed | None
    redis: RedisClient
    http: httpx.AsyncClient
    keyring: KeyRing
    # Emergency key revocations, polled from Redis (started by the lifespan).
    revoked_keys: RevokedKeys
    identities: IdentityRepository
    sessions: SessionStore
    issuer: TokenIssuer
    registration: RegistrationService
    authenticator: Authenticator
    revoker: TokenRevoker
    bearer: BearerAuthenticator
    passkeys: PasskeyService
    totp: TotpService
    mfa: MfaService
    hasher: PasswordHasher
    passwords: PasswordLifecycle
    deletion: AccountDeletion
    export: AccountExport
    email: EmailLifecycle
    # Other applications (OAuth clients): the registry and the grants.
    clients: ClientRegistry
    client_grants: ClientCredentialsGrant
    introspector: Introspector
    authorizations: AuthorizationService
    userinfo: UserInfo
    # None without SMTP_URL: nothing is mailed (forgot-password answers 503).
    outbox: Outbox | None
    # Security writes confirmed by replicas (REDIS_MIN_REPLICAS_ACK).
    durable: DurableWrites
