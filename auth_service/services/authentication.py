"""Password login, refresh-token rotation and logout."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from email_validator import EmailNotValidError, validate_email

from auth_service.errors import (
    EmailNotVerified,
    InvalidCredentials,
    RateLimited,
    RefreshSessionIdle,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RefreshTokenWrongClient,
    SecondFactorRequired,
)
from auth_service.models.identity import Identity
from auth_service.repositories.identities import IdentityRepository, LoginIdentity
from auth_service.services.service import service
from auth_service.services.tokens import USER_CLIENT_ID, USER_SCOPE, TokenIssuer
from auth_service.stores.keys import SID_LENGTH, tag_of
from auth_service.stores.rate_limit import Limit, RateLimiter, client_network
from auth_service.stores.sessions import SessionStore, owner_hint
from shared.http.fields import email_key

_log = logging.getLogger(__name__)


class _Hasher(Protocol):
    async def hash(self, password: str) -> str: ...
    async def verify(self, stored_hash: str | None, password: str) -> bool: ...
    def needs_rehash(self, stored_hash: str) -> bool: ...


class _Reminder(Protocol):
    async def remind(self, *, user_id: str, address: str, ip: str) -> bool: ...


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
    """Login throttles (docs/RATE_LIMITS.md has the numbers and the reasoning).

    `per_account_network` is the brake one attacker trips: attempts on one
    account from one client network. `per_account` is the higher ceiling
    across all networks (NIST SP 800-63B §5.2.2's 100). Splitting them means
    an attacker on one network cannot lock the real user out elsewhere.
    """

    per_ip: Limit
    per_account: Limit
    per_account_network: Limit | None = None
    ipv4_prefix: int = 32
    ipv6_prefix: int = 64
    # Refresh tokens are 256-bit, so this is flood control, not guessing control.
    refresh_per_ip: Limit | None = None

    def for_attempt(self, ip: str, account: str) -> list[tuple[Limit, str]]:
        """(limit, subject) pairs to count for one attempt, in order."""
        pairs = [(self.per_ip, ip)]
        if self.per_account_network is not None:
            net = client_network(ip, ipv4_prefix=self.ipv4_prefix, ipv6_prefix=self.ipv6_prefix)
            pairs.append((self.per_account_network, f"{account}|{net}"))
        pairs.append((self.per_account, account))
        return pairs


def login_key(email: str) -> str:
    """Normalise a login email the way registration did; garbage maps to itself
    so that it costs and answers exactly like an unknown account."""
    try:
        normalized = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError:
        normalized = email
    return email_key(normalized)


@service
class Authenticator:
    identities: IdentityRepository
    hasher: _Hasher
    sessions: SessionStore
    issuer: TokenIssuer
    limiter: RateLimiter
    limits: LoginLimits
    # REQUIRE_VERIFIED_EMAIL: no session for an account whose address is not
    # verified; `verification` mails such an account a fresh link.
    require_verified_email: bool = False
    verification: _Reminder | None = None

    async def check_password(self, email: str, password: str, *, ip: str) -> Identity:
        """Verify email + password; returns the identity.

        Unknown email and wrong password take the same path (a dummy argon2
        verify runs for unknown emails) and raise the same error.

        Raises:
            RateLimited: per-IP or per-account attempts exhausted.
            InvalidCredentials: unknown email or wrong password.
        """
        return (await self._check_password(email, password, ip=ip)).identity

    async def _check_password(self, email: str, password: str, *, ip: str) -> LoginIdentity:
        """`check_password`, with the account's second-factor answer."""
        key = login_key(email)
        # Every counter is taken before the hash runs: parallel guesses
        # cannot outrun the limit. The account counters are keyed by the email
        # as typed, known or not, so their behaviour reveals nothing either.
        # One round trip for all of them, counted in order (RateLimiter.hit_each).
        attempt = self.limits.for_attempt(ip, key)
        refused = await self.limiter.hit_each(attempt)
        if refused is not None:
            limit, decision = refused
            raise RateLimited(decision.retry_after, limit.scope)
        # The identity and whether it has a second factor, in one statement
        # (P13), where the gate used to be a second statement after the hash.
        # Reading it before the hash makes it exactly as old as the identity
        # row this login already acts on (its password hash, its status:
        # read here too, from the same snapshot): a factor enrolled while the
        # hash runs (~20 ms; enrolling needs a signed-in session of the
        # account) is missed as a password changed or an account disabled
        # meanwhile always was. Only looked at once the password verified
        # (`login_password`): never a hint to someone guessing.
        found = await self.identities.active_for_login(key)
        ok = await self.hasher.verify(found.identity.password_hash if found else None, password)
        if not ok or found is None:
            raise InvalidCredentials
        identity = found.identity
        # The right password ends the run of failures (NIST SP 800-63B
        # §5.2.2: disregard earlier failed attempts after a success).
        await self.limiter.reset_each(attempt[1:])
        if self.hasher.needs_rehash(identity.password_hash):
            # Parameters were raised since this hash was made: upgrade it now,
            # while we briefly hold the plaintext (docs/ARCHITECTURE.md: rehash on login).
            await self.identities.update_password_hash(
                identity.id, await self.hasher.hash(password)
            )
        return found

    async def admit(self, identity: Identity, *, ip: str) -> None:
        """Refuse an unverified account when REQUIRE_VERIFIED_EMAIL is on.

        Called only once the password or passkey was verified: the refusal
        (which says the account exists) is for whoever holds its secret. A
        fresh link goes out with it, since someone who cannot log in cannot
        ask for one with a bearer token (within the resend limits).

        Raises:
            EmailNotVerified: the setting is on and the address is unverified.
        """
        if not self.require_verified_email or identity.email_verified:
            return
        if self.verification is not None:
            await self.verification.remind(user_id=str(identity.id), address=identity.email, ip=ip)
        raise EmailNotVerified(str(identity.id))

    async def start_session(
        self, identity: Identity, *, amr: tuple[str, ...], ip: str, user_agent: str
    ) -> TokenGrant:
        """A new session and its tokens for an authenticated identity.

        Every login ends here (password, passkey, second factor), so the
        verified-email rule is checked here as well as before a second step.

        Raises:
            EmailNotVerified: see `admit`.
        """
        await self.admit(identity, ip=ip)
        auth_time = int(time.time())
        sid, refresh = await self.sessions.create(
            user_id=str(identity.id), amr=amr, auth_time=auth_time, ip=ip, user_agent=user_agent
        )
        access = self.issuer.access_token(
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
        """Password login; tokens only for accounts without a second factor.

        Raises:
            RateLimited, InvalidCredentials: see `check_password`.
            SecondFactorRequired: the password was right and the account has a
                passkey; the caller continues with `MfaService.begin`.
            EmailNotVerified: the password was right, the address is not
                verified and REQUIRE_VERIFIED_EMAIL is on (before any second
                step, which could not end in a session either).
        """
        found = await self._check_password(email, password, ip=ip)
        identity = found.identity
        await self.admit(identity, ip=ip)
        # Accounts with a passkey or TOTP get no tokens from the password alone.
        if found.second_factor:
            raise SecondFactorRequired(str(identity.id))
        return await self.start_session(identity, amr=("pwd",), ip=ip, user_agent=user_agent)

    async def refresh(
        self, refresh_token: str, *, ip: str, user_agent: str, client_id: str | None = None
    ) -> TokenGrant:
        """Rotate a refresh token (one use each).

        The account is read *before* the rotation is committed: a database
        fault then answers 503 with the token untouched, and the client's
        retry is an ordinary refresh, never a false reuse. A rotation whose
        answer is lost after the commit (a Redis reply timeout) is covered by
        the store's retry grace: the retry gets the same successor.

        Args:
            client_id: the client presenting the token; None means the
                platform's own public client (`idp-web`).

        Raises:
            RefreshTokenInvalid: unknown, expired, or its session is gone.
            RefreshSessionIdle: unused past the idle timeout; the session ended.
            RefreshTokenWrongClient: issued to another client (RFC 6749 §6).
            RefreshTokenReused: an already-rotated token; the session is now revoked.
        """
        if self.limits.refresh_per_ip is not None:
            decision = await self.limiter.hit(self.limits.refresh_per_ip, ip)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, self.limits.refresh_per_ip.scope)
        # Whose token: the token says (no round trip), or, for a token minted
        # before tokens carried their owner, its record does. The hint is
        # unverified here; the rotation below refuses a record of anyone else.
        user_id = owner_hint(refresh_token)
        if user_id is None:
            owner = await self.sessions.owner(refresh_token)
            if owner is None:
                raise RefreshTokenInvalid
            user_id = owner[1]
        # Re-read the account: a deleted or disabled identity must not keep
        # minting tokens, and role changes take effect at the next refresh.
        roles = await self.identities.active_roles_by_id(uuid.UUID(user_id))
        if roles is None:
            sid = tag_of(refresh_token, SID_LENGTH)
            if sid is not None:
                # Only a session of that account: the hint is the presenter's
                # word, and must not end anyone else's session.
                await self.sessions.revoke(sid, owner=user_id)
            raise RefreshTokenInvalid
        rot = await self.sessions.rotate(
            refresh_token, ip=ip, user_agent=user_agent, client_id=client_id, owner=user_id
        )
        if rot.outcome == "reused":
            raise RefreshTokenReused(rot.sid, rot.user_id)
        if rot.outcome == "idle":
            raise RefreshSessionIdle
        if rot.outcome == "wrong_client":
            raise RefreshTokenWrongClient
        if rot.outcome != "ok":
            raise RefreshTokenInvalid
        # Another application's session (the rotation checked the binding)
        # keeps the scope the user granted it, and never the account's roles:
        # an admin signing in to some app does not make that app an admin.
        client = client_id or USER_CLIENT_ID
        own = client == USER_CLIENT_ID
        scope = rot.scope or USER_SCOPE
        access = self.issuer.access_token(
            user_id=rot.user_id,
            sid=rot.sid,
            roles=roles if own else (),
            amr=rot.amr,
            auth_time=rot.auth_time,
            client_id=client,
            scope=scope,
        )
        return TokenGrant(
            access.token, access.expires_in, rot.refresh_token, scope, rot.user_id, rot.sid
        )
