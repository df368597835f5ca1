"""Verification links: who mails them, and how often.

Three callers: registration (the first link), `POST /email/verify/resend`
(a new link on request) and a login refused by REQUIRE_VERIFIED_EMAIL (a new
link as part of the refusal, since someone who cannot log in cannot ask for
one with a bearer token). Each new link retires the one before: only the
newest mail works.

The link proves one address: the token carries the address it was mailed to,
so after an email change a link that went to the old address verifies
nothing (services/lifecycle/email.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from auth_service.errors import MailUnavailable, RateLimited
from auth_service.mail import Outbox, build_message, verification_mail
from auth_service.mail.messages import page_link
from auth_service.stores.one_time_tokens import OneTimeTokens
from auth_service.stores.rate_limit import Limit, RateLimiter

__all__ = ["VerificationLimits", "VerificationMailer"]


@dataclass(frozen=True)
class VerificationLimits:
    """Verification mails asked for: per client IP and per account (each
    sends a mail to an address, so both bound mail bombing)."""

    per_ip: Limit
    per_account: Limit


class VerificationMailer:
    """Args:
    tokens: the `verify` one-time tokens (subject: user id; data: the address).
    limiter, limits: throttles of resends and login reminders.
    outbox: None without SMTP_URL: nothing is mailed.
    issuer: the page's origin, for the link.
    mail_from: the From header.
    """

    def __init__(
        self,
        *,
        tokens: OneTimeTokens,
        limiter: RateLimiter,
        limits: VerificationLimits,
        outbox: Outbox | None,
        issuer: str,
        mail_from: str,
    ) -> None:
        self.tokens = tokens
        self._limiter = limiter
        self._limits = limits
        self._outbox = outbox
        self._issuer = issuer
        self._from = mail_from

    @property
    def enabled(self) -> bool:
        return self._outbox is not None

    def send(self, *, user_id: str, address: str) -> bool:
        """Queue a verification mail to `address` (no limits: registration's
        own limits already count the request); False when mail is off."""
        if self._outbox is None:
            return False
        tokens, ttl_hours = self.tokens, max(1, self.tokens.ttl_seconds // 3600)

        async def compose() -> EmailMessage:
            # Minted by the outbox's worker: the request path does no Redis
            # write for the mail, and the token exists only once it is sent.
            token = await tokens.issue(user_id, data=address)
            content = verification_mail(
                link=page_link(self._issuer, verify_token=token), ttl_hours=ttl_hours
            )
            return build_message(sender=self._from, to=address, content=content)

        self._outbox.submit("email_verification", compose, user_id=user_id)
        return True

    async def resend(self, *, user_id: str, address: str, ip: str) -> None:
        """A new link on request; the older ones stop working once it is minted.

        Raises:
            MailUnavailable: no mail transport is configured.
            RateLimited: too many requests from this IP or for this account.
        """
        if self._outbox is None:
            raise MailUnavailable
        await self._count(user_id, ip)
        self.send(user_id=user_id, address=address)

    async def remind(self, *, user_id: str, address: str, ip: str) -> bool:
        """A new link for a login refused as unverified, within the same
        limits as resends; True when one was queued. Never raises for a
        limit: the login's answer is the refusal either way."""
        if self._outbox is None:
            return False
        try:
            await self._count(user_id, ip)
        except RateLimited:
            return False
        return self.send(user_id=user_id, address=address)

    async def _count(self, user_id: str, ip: str) -> None:
        for limit, subject in ((self._limits.per_ip, ip), (self._limits.per_account, user_id)):
            decision = await self._limiter.hit(limit, subject)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, limit.scope)
