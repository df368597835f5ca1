"""Password change (with the current password) and reset (with a mailed link).

Both end every other way into the account: a change revokes every session
but the caller's, a reset revokes them all (the person resetting may be
recovering from an attacker who knew the old password; OWASP ASVS 5.0
V6.4.x, NIST SP 800-63B §6.1.2.3). Sessions are revoked through the session
store, whose revocation feed reaches the resource servers within a second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from auth_service.errors import (
    InvalidCredentials,
    InvalidOneTimeToken,
    MailUnavailable,
    RateLimited,
    WeakPassword,
)
from auth_service.mail import Outbox, build_message, password_reset_mail
from auth_service.mail.messages import page_link
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.authentication import Authenticator, login_key
from auth_service.stores.one_time_tokens import OneTimeTokens
from auth_service.stores.rate_limit import Limit, RateLimiter
from auth_service.stores.sessions import SessionStore

__all__ = ["PasswordLifecycle", "ResetLimits"]


class _Hasher(Protocol):
    async def hash(self, password: str) -> str: ...


class _Policy(Protocol):
    async def check_async(self, password: str, *, email: str) -> list[str]: ...


@dataclass(frozen=True)
class ResetLimits:
    """Forgot-password throttles: per client IP, and per email as typed
    (known or not, so the limit's behaviour reveals nothing)."""

    per_ip: Limit
    per_email: Limit


class PasswordLifecycle:
    def __init__(
        self,
        *,
        identities: IdentityRepository,
        authenticator: Authenticator,
        hasher: _Hasher,
        policy: _Policy,
        sessions: SessionStore,
        reset_tokens: OneTimeTokens,
        limiter: RateLimiter,
        limits: ResetLimits,
        outbox: Outbox | None,
        issuer: str,
        mail_from: str,
    ) -> None:
        self._identities = identities
        self._authenticator = authenticator
        self._hasher = hasher
        self._policy = policy
        self._sessions = sessions
        self._tokens = reset_tokens
        self._limiter = limiter
        self._limits = limits
        self._outbox = outbox
        self._issuer = issuer
        self._from = mail_from

    async def change(
        self, *, user_id: str, sid: str, current_password: str, new_password: str, ip: str
    ) -> int:
        """Replace the password of a signed-in account; returns how many other
        sessions were revoked.

        The current password is checked like a login (same limits, same
        counters): a stolen access token alone cannot take the account over,
        nor guess the password faster than the login form allows.

        Raises:
            RateLimited: the login limits for this account or IP are spent.
            InvalidCredentials: wrong current password (or the account is gone).
            WeakPassword: the new password breaks the policy.
        """
        identity = await self._identities.active_by_id(uuid.UUID(user_id))
        if identity is None:
            raise InvalidCredentials
        checked = await self._authenticator.check_password(identity.email, current_password, ip=ip)
        if checked.id != identity.id:  # cannot happen: the email is unique
            raise InvalidCredentials
        await self._set_password(identity.id, identity.email, new_password)
        # A reset link mailed before the change must not undo it.
        await self._tokens.retire(user_id)
        return await self._sessions.revoke_all(user_id, keep=sid)

    async def forgot(self, email: str, *, ip: str) -> str | None:
        """Mail a reset link if `email` has an account; the user id if it has.

        The caller answers the same either way. The request path does the
        same work for both (limits, one lookup, one queue operation for a
        known account); the token is minted and the mail composed and sent
        by the outbox's worker, off the request path (mail/outbox.py).

        Raises:
            RateLimited: too many requests from this IP or for this email.
            MailUnavailable: no mail transport is configured (for every email).
        """
        if self._outbox is None:
            raise MailUnavailable
        key = login_key(email)
        refused = await self._limiter.hit_each(
            [(self._limits.per_ip, ip), (self._limits.per_email, key)]
        )
        if refused is not None:
            limit, decision = refused
            raise RateLimited(decision.retry_after, limit.scope)
        identity = await self._identities.active_by_email(key)
        if identity is None:
            return None
        user_id, address = str(identity.id), identity.email

        async def compose() -> EmailMessage:
            token = await self._tokens.issue(user_id)
            content = password_reset_mail(
                link=page_link(self._issuer, reset_token=token),
                ttl_minutes=self._tokens.ttl_seconds // 60,
            )
            return build_message(sender=self._from, to=address, content=content)

        self._outbox.submit("password_reset", compose, user_id=user_id)
        return user_id

    async def reset(self, *, token: str, new_password: str) -> tuple[str, int]:
        """Set a new password with a reset token; (user id, sessions revoked).

        The policy is checked before the token is used up, so a refused
        password leaves the link working for a second try.

        Raises:
            InvalidOneTimeToken: unknown, used or expired token.
            WeakPassword: the new password breaks the policy.
        """
        user_id = await self._tokens.peek(token)
        identity = await self._identities.active_by_id(uuid.UUID(user_id)) if user_id else None
        if identity is None:
            raise InvalidOneTimeToken
        problems = await self._policy.check_async(new_password, email=identity.email)
        if problems:
            raise WeakPassword(problems)
        # Single use: of two concurrent resets with one token, one wins here.
        if await self._tokens.consume(token) != user_id:
            raise InvalidOneTimeToken
        await self._identities.update_password_hash(
            identity.id, await self._hasher.hash(new_password)
        )
        return str(identity.id), await self._sessions.revoke_all(str(identity.id))

    async def _set_password(self, identity_id: uuid.UUID, email: str, password: str) -> None:
        problems = await self._policy.check_async(password, email=email)
        if problems:
            raise WeakPassword(problems)
        await self._identities.update_password_hash(identity_id, await self._hasher.hash(password))
