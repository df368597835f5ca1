"""Password login, refresh-token rotation and logout."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from email_validator import EmailNotValidError, validate_email

from auth_service.errors import (
    InvalidCredentials,
    RateLimited,
    RefreshTokenInvalid,
    RefreshTokenReused,
)
from auth_service.models import Identity
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.tokens import USER_SCOPE, TokenIssuer
from auth_service.stores.rate_limit import Limit, RateLimiter
from auth_service.stores.sessions import SessionStore
from shared.fields import email_key

_log = logging.getLogger(__name__)


class _Hasher(Protocol):
    async def hash(self, password: str) -> str: ...
    async def verify(self, stored_hash: str | None, password: str) -> bool: ...
    def needs_rehash(self, stored_hash: str) -> bool: ...


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    refresh_token: str
    scope: str
    user_id: str
    sid: str


@dataclass(frozen=True)
class LoginLimits:
    per_ip: Limit
    per_account: Limit


def login_key(email: str) -> str:
    """Normalise a login email the way registration did; garbage maps to itself
    so that it costs and answers exactly like an unknown account."""
    try:
        normalized = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError:
        normalized = email
    return email_key(normalized)


class Authenticator:
    def __init__(
        self,
        *,
        identities: IdentityRepository,
        hasher: _Hasher,
        sessions: SessionStore,
        issuer: TokenIssuer,
        limiter: RateLimiter,
        limits: LoginLimits,
    ) -> None:
        self._identities = identities
        self._hasher = hasher
        self._sessions = sessions
        self._issuer = issuer
        self._limiter = limiter
        self._limits = limits

    async def check_password(self, email: str, password: str, *, ip: str) -> Identity:
        """Verify email + password; returns the identity.

        Unknown email and wrong password take the same path (a dummy argon2
        verify runs for unknown emails) and raise the same error.

        Raises:
            RateLimited: per-IP or per-account attempts exhausted.
            InvalidCredentials: unknown email or wrong password.
        """
        key = login_key(email)
        # Both counters are taken before the hash runs: parallel guesses
        # cannot outrun the limit. The account counter is keyed by the email
        # as typed, known or not, so its behaviour reveals nothing either.
        for limit, subject in ((self._limits.per_ip, ip), (self._limits.per_account, key)):
            decision = await self._limiter.hit(limit, subject)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, limit.scope)
        identity = await self._identities.active_by_email(key)
        ok = await self._hasher.verify(identity.password_hash if identity else None, password)
        if not ok or identity is None:
            raise InvalidCredentials
        await self._limiter.reset(self._limits.per_account, key)
        if self._hasher.needs_rehash(identity.password_hash):
            # Parameters were raised since this hash was made: upgrade it now,
            # while we briefly hold the plaintext (DESIGN.md: rehash on login).
            await self._identities.update_password_hash(
                identity.id, await self._hasher.hash(password)
            )
        return identity

    async def start_session(
        self, identity: Identity, *, amr: tuple[str, ...], ip: str, user_agent: str
    ) -> TokenGrant:
        auth_time = int(time.time())
        sid, refresh = await self._sessions.create(
            user_id=str(identity.id), amr=amr, auth_time=auth_time, ip=ip, user_agent=user_agent
        )
        access = self._issuer.access_token(
            user_id=str(identity.id),
            sid=sid,
            roles=identity.role_list,
            amr=amr,
            auth_time=auth_time,
        )
        return TokenGrant(
            access.token, access.expires_in, refresh, USER_SCOPE, str(identity.id), sid
        )

    async def login_password(
        self, email: str, password: str, *, ip: str, user_agent: str
    ) -> TokenGrant:
        identity = await self.check_password(email, password, ip=ip)
        return await self.start_session(identity, amr=("pwd",), ip=ip, user_agent=user_agent)

    async def refresh(self, refresh_token: str, *, ip: str, user_agent: str) -> TokenGrant:
        """Rotate a refresh token (one use each).

        Raises:
            RefreshTokenInvalid: unknown, expired, or its session is gone.
            RefreshTokenReused: an already-rotated token; the session is now revoked.
        """
        rot = await self._sessions.rotate(refresh_token, ip=ip, user_agent=user_agent)
        if rot.outcome == "reused":
            raise RefreshTokenReused(rot.sid, rot.user_id)
        if rot.outcome != "ok":
            raise RefreshTokenInvalid
        # Re-read the account: a deleted or disabled identity must not keep
        # minting tokens, and role changes take effect at the next refresh.
        identity = await self._identities.active_by_id(uuid.UUID(rot.user_id))
        if identity is None:
            await self._sessions.revoke(rot.sid)
            raise RefreshTokenInvalid
        access = self._issuer.access_token(
            user_id=rot.user_id,
            sid=rot.sid,
            roles=identity.role_list,
            amr=rot.amr,
            auth_time=rot.auth_time,
        )
        return TokenGrant(
            access.token, access.expires_in, rot.refresh_token, USER_SCOPE, rot.user_id, rot.sid
        )
