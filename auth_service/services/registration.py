"""Self-registration: identity here, profile in the user service."""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from auth_service.errors import EmailTaken, RateLimited, UpstreamUnavailable, WeakPassword
from auth_service.peers.user_service import UserServiceClient
from auth_service.repositories.identities import IdentityRepository
from auth_service.schemas.accounts import RegistrationRequest
from auth_service.services.service import service
from auth_service.stores.rate_limit import Limit, RateLimiter
from shared.http.fields import email_key


class _Hasher(Protocol):
    async def hash(self, password: str) -> str: ...


class _Verification(Protocol):
    def send(self, *, user_id: str, address: str) -> bool: ...


class _Policy(Protocol):
    async def check_async(
        self, password: str, *, email: str, name: str | None, date_of_birth: date | None
    ) -> list[str]: ...


@service
class RegistrationService:
    identities: IdentityRepository
    hasher: _Hasher
    policy: _Policy
    users: UserServiceClient
    limiter: RateLimiter
    ip_limit: Limit
    email_limit: Limit | None = None
    # Mails the first verification link (services/lifecycle/verification_mail.py).
    verification: _Verification | None = None

    async def register(self, req: RegistrationRequest, *, ip: str) -> dict[str, Any]:
        """Create an account and its profile; all or nothing.

        The identity is written as *pending* first (the unique email index
        decides races), the profile is created through the user service, and
        only then is the identity activated. If the user service fails the
        pending identity is deleted, so a retry starts clean.

        Raises:
            RateLimited, WeakPassword, EmailTaken, UpstreamUnavailable.
        """
        # Counted before any work, per client IP and per email (case-folded,
        # as uniqueness is): the IP limit bounds how many addresses one client
        # can probe through the 409; the email limit bounds retries against
        # one address from many IPs (docs/RATE_LIMITS.md).
        limits = [(self.ip_limit, ip)]
        if self.email_limit is not None:
            limits.append((self.email_limit, email_key(req.email)))
        refused = await self.limiter.hit_each(limits)
        if refused is not None:
            limit, decision = refused
            raise RateLimited(decision.retry_after, limit.scope)
        password = req.password.get_secret_value()
        # The account's own data is context for the strength estimate: a
        # password built from the name or birthday is among the first guesses.
        problems = await self.policy.check_async(
            password, email=req.email, name=req.name, date_of_birth=req.date_of_birth
        )
        if problems:
            raise WeakPassword(problems)
        password_hash = await self.hasher.hash(password)
        identity = await self.identities.create_pending(
            email=req.email, email_key=email_key(req.email), password_hash=password_hash
        )
        if identity is None:
            raise EmailTaken
        try:
            profile = await self.users.upsert_profile(
                user_id=str(identity.id),
                name=req.name,
                email=req.email,
                date_of_birth=req.date_of_birth,
                job_title=req.job_title,
                created_at=identity.created_at,
            )
        except UpstreamUnavailable:
            await self.identities.delete(identity.id)
            raise
        await self.identities.activate(identity.id)
        if self.verification is not None:
            # Queued, not sent: the answer never waits for the mail server.
            self.verification.send(user_id=str(identity.id), address=identity.email)
        return profile
