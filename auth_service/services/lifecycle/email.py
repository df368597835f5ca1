"""Email verification and email change.

One endpoint finishes both (`POST /email/verify {token}`): a token is proof
that whoever holds it reads the mailbox it was sent to, and what that proves
depends on the store it was minted in:

- `verify`: the account's current address is read by its owner; the token
  carries that address and proves nothing once the account has another.
- `email-change`: the new address (carried by the token, never taken from
  the request) is read by whoever asked for the change with the password;
  only then does the account move to it.

Order of the steps when a token is used: look it up (not used up), check,
update the profile in the user service, use the token up (exactly one of
concurrent uses wins), then change the identity. A user service outage
answers 503 with the token still live, so the link can be tried again; a
profile moved for an address that another account took meanwhile is put
back.

A completed change revokes every other session of the account (the one that
asked for it stays), as a password change does: the address is the account's
recovery channel, and a session opened before it moved may belong to
whoever the change was meant to lock out. A notice goes to the old address
(no link, no secret), so an owner who did not make the change learns of it.
Reset links mailed to the old address stop working.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from auth_service.errors import (
    EmailAlreadyVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    MailUnavailable,
    RateLimited,
    SameEmail,
)
from auth_service.mail import Outbox, build_message, email_change_mail, email_changed_mail
from auth_service.mail.messages import page_link
from auth_service.models.identity import Identity
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.authentication import Authenticator
from auth_service.services.lifecycle.verification_mail import VerificationMailer
from auth_service.stores.one_time_tokens import OneTimeGrant, OneTimeTokens
from auth_service.stores.rate_limit import Limit, RateLimiter
from auth_service.stores.sessions import SessionStore
from shared.http.fields import email_key

__all__ = ["ChangeLimits", "EmailLifecycle", "Verified"]


class _Profiles(Protocol):
    async def update_email(
        self, *, user_id: str, email: str | None = None, email_verified: bool | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ChangeLimits:
    """Email change requests (each mails a new address): per IP and per account."""

    per_ip: Limit
    per_account: Limit


@dataclass(frozen=True)
class Verified:
    """What a used token did.

    Attributes:
        user_id: the account.
        changed: True for a completed email change, False for a verified address.
        sessions_revoked: other sessions ended by a change.
    """

    user_id: str
    changed: bool
    sessions_revoked: int = 0


class EmailLifecycle:
    def __init__(
        self,
        *,
        identities: IdentityRepository,
        authenticator: Authenticator,
        profiles: _Profiles,
        sessions: SessionStore,
        mailer: VerificationMailer,
        change_tokens: OneTimeTokens,
        reset_tokens: OneTimeTokens,
        limiter: RateLimiter,
        limits: ChangeLimits,
        outbox: Outbox | None,
        issuer: str,
        mail_from: str,
    ) -> None:
        self._identities = identities
        self._authenticator = authenticator
        self._profiles = profiles
        self._sessions = sessions
        self._mailer = mailer
        self._verify_tokens = mailer.tokens
        self._change_tokens = change_tokens
        self._reset_tokens = reset_tokens
        self._limiter = limiter
        self._limits = limits
        self._outbox = outbox
        self._issuer = issuer
        self._from = mail_from

    async def resend(self, *, user_id: str, ip: str) -> None:
        """Mail a new verification link to the account's address.

        Raises:
            MailUnavailable: no mail transport is configured.
            EmailAlreadyVerified: nothing to verify.
            RateLimited: too many requests from this IP or for this account.
            InvalidCredentials: the account is gone.
        """
        identity = await self._active(user_id)
        if not self._mailer.enabled:
            raise MailUnavailable
        if identity.email_verified:
            raise EmailAlreadyVerified
        await self._mailer.resend(user_id=user_id, address=identity.email, ip=ip)

    async def request_change(
        self, *, user_id: str, sid: str, new_email: str, password: str, ip: str
    ) -> None:
        """Mail a link to `new_email`; the account moves there when it is used.

        The password is checked like a login (same limits and counters), so a
        stolen access token alone cannot move the account's recovery channel.
        A newer request retires the link of an earlier one.

        Raises:
            MailUnavailable: no mail transport is configured.
            RateLimited: the login limits, or the change limits, are spent.
            InvalidCredentials: wrong password (or the account is gone).
            SameEmail: `new_email` is the account's address already.
            EmailTaken: another account uses `new_email` (case-insensitively).
        """
        if self._outbox is None:
            raise MailUnavailable
        identity = await self._active(user_id)
        checked = await self._authenticator.check_password(identity.email, password, ip=ip)
        if checked.id != identity.id:  # cannot happen: the email is unique
            raise InvalidCredentials
        key = email_key(new_email)
        if key == identity.email_key:
            raise SameEmail
        # Counted once the password is right: these limits bound mail to other
        # people's addresses and probes of which addresses have accounts (the
        # 409); password guesses are bounded by the login limits above.
        for limit, subject in ((self._limits.per_ip, ip), (self._limits.per_account, user_id)):
            decision = await self._limiter.hit(limit, subject)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, limit.scope)
        # Checked now to answer 409 at once, and again when the link is used.
        if await self._identities.email_in_use(key, other_than=identity.id):
            raise EmailTaken
        data = json.dumps({"email": new_email, "sid": sid})
        tokens, ttl_hours = self._change_tokens, max(1, self._change_tokens.ttl_seconds // 3600)

        async def compose() -> EmailMessage:
            token = await tokens.issue(user_id, data=data)
            content = email_change_mail(
                link=page_link(self._issuer, verify_token=token), ttl_hours=ttl_hours
            )
            return build_message(sender=self._from, to=new_email, content=content)

        self._outbox.submit("email_change", compose, user_id=user_id)

    async def verify(self, token: str) -> Verified:
        """Use a verification or email-change token.

        Raises:
            InvalidOneTimeToken: unknown, used or expired token, or one for an
                address the account no longer has.
            EmailTaken: an email change whose address another account took
                since it was asked for (the link is used up).
            UpstreamUnavailable: the user service could not record it; the
                token stays live.
        """
        grant = await self._verify_tokens.lookup(token)
        if grant is not None:
            return await self._verify_address(token, grant)
        grant = await self._change_tokens.lookup(token)
        if grant is not None:
            return await self._complete_change(token, grant)
        raise InvalidOneTimeToken

    async def _verify_address(self, token: str, grant: OneTimeGrant) -> Verified:
        identity = await self._identities.active_by_id(uuid.UUID(grant.subject))
        if identity is None or email_key(grant.data) != identity.email_key:
            # Mailed to an address the account has left: it proves nothing now.
            await self._verify_tokens.consume(token)
            raise InvalidOneTimeToken
        await self._profiles.update_email(user_id=grant.subject, email_verified=True)
        if await self._verify_tokens.consume(token) != grant.subject:
            raise InvalidOneTimeToken  # a concurrent use won; it did the same
        await self._identities.set_email_verified(identity.id)
        return Verified(user_id=grant.subject, changed=False)

    async def _complete_change(self, token: str, grant: OneTimeGrant) -> Verified:
        data = json.loads(grant.data)
        new_email, keep_sid = str(data["email"]), str(data["sid"])
        key = email_key(new_email)
        identity = await self._identities.active_by_id(uuid.UUID(grant.subject))
        if identity is None:
            await self._change_tokens.consume(token)
            raise InvalidOneTimeToken
        # Another account, not this one: a concurrent use of this token may
        # have moved it to `key` already (it then answers 204, this one 400).
        if await self._identities.email_in_use(key, other_than=identity.id):
            await self._change_tokens.consume(token)
            raise EmailTaken
        old_email, was_verified = identity.email, identity.email_verified
        await self._profiles.update_email(
            user_id=grant.subject, email=new_email, email_verified=True
        )
        if await self._change_tokens.redeem(token) is None:
            # A concurrent use won and writes the same profile: leave it. (A
            # token that expired in the instant since the lookup would leave
            # the profile ahead of the identity; the next change or
            # verification writes it again.)
            raise InvalidOneTimeToken
        if not await self._identities.change_email(identity.id, email=new_email, email_key=key):
            # The address was taken since the check: the profile goes back.
            await self._profiles.update_email(
                user_id=grant.subject, email=old_email, email_verified=was_verified
            )
            raise EmailTaken
        # Links mailed to the old address belong to it, not to the account.
        await self._verify_tokens.retire(grant.subject)
        await self._reset_tokens.retire(grant.subject)
        revoked = await self._sessions.revoke_all(grant.subject, keep=keep_sid)
        self._notify_old_address(grant.subject, old_email, new_email)
        return Verified(user_id=grant.subject, changed=True, sessions_revoked=revoked)

    def _notify_old_address(self, user_id: str, old_email: str, new_email: str) -> None:
        if self._outbox is None:
            return
        content = email_changed_mail(new_address=new_email)
        message = build_message(sender=self._from, to=old_email, content=content)

        async def compose() -> EmailMessage:
            return message

        self._outbox.submit("email_changed", compose, user_id=user_id)

    async def _active(self, user_id: str) -> Identity:
        identity = await self._identities.active_by_id(uuid.UUID(user_id))
        if identity is None:
            raise InvalidCredentials
        return identity
