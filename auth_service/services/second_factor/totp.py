"""TOTP (RFC 6238) as a second factor: enrolment, confirmation, removal, login codes.

SHA-1, 6 digits, 30-second steps: what every authenticator app reads from an
`otpauth://` URI. The secret is 160 random bits (RFC 4226 §4 R6), sealed at
rest (`auth_service/keys/secret_box.py`). A code is accepted for the current
step or one step either side (RFC 6238 §5.2 allows one step of network delay
and clock drift), and once only: the accepted step is recorded by a
conditional UPDATE, so a replay, or a race of two logins with one code,
finds the step spent.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pyotp

from auth_service.errors import (
    CeremonyFailed,
    RateLimited,
    ReauthenticationRequired,
    StepUpRequired,
    TotpAlreadyEnabled,
    TotpNotEnabled,
)
from auth_service.keys.secret_box import SealedSecretUnreadable, SecretBox
from auth_service.models.identity import Identity
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.totp import TotpRepository
from auth_service.services.authentication import Authenticator
from auth_service.services.second_factor.factors import AccountFactors
from auth_service.services.service import service
from auth_service.stores.rate_limit import Limit, RateLimiter

__all__ = ["TOTP_AMR", "TotpEnrolment", "TotpService"]

# RFC 8176 §2: `otp`, a one-time password; `pwd` the password of the first step.
TOTP_AMR = ("pwd", "otp")
_DRIFT_STEPS = 1
_DIGITS = 6


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    # The password was checked again for this enrolment (the first second
    # factor after a login that is not recent): the caller audits it.
    reauthenticated: bool


def _clean(code: str) -> str | None:
    """The six digits of a typed code (spaces allowed, as apps show "123 456")."""
    digits = code.replace(" ", "")
    return digits if len(digits) == _DIGITS and digits.isascii() and digits.isdigit() else None


@service
class TotpService:
    totp: TotpRepository
    identities: IdentityRepository
    factors: AccountFactors
    authenticator: Authenticator
    box: SecretBox
    issuer_name: str
    limiter: RateLimiter
    # Wrong codes per account (docs/RATE_LIMITS.md, "TOTP codes").
    limits: tuple[Limit, ...]
    clock: Callable[[], float] = time.time

    # --- enrolment ----------------------------------------------------------

    async def enrol(
        self,
        *,
        user_id: str,
        recent_mfa: bool,
        recent_login: bool,
        password: str | None = None,
        ip: str = "",
    ) -> TotpEnrolment:
        """A new secret for the bearer's account, active only once confirmed.

        The same gate as a passkey (docs/PASSKEYS.md, "The first passkey"):
        on an account with a second factor already, a recent second factor;
        as the account's first second factor (it turns MFA on and comes with
        the recovery codes), a recent login or the password again, so that a
        stolen session or refresh token cannot put the thief's authenticator
        on the account.

        Raises:
            TotpAlreadyEnabled, StepUpRequired, ReauthenticationRequired,
            InvalidCredentials, RateLimited (the password check's login limits).
        """
        identity = await self._identity(user_id)
        if await self.totp.enrolled(identity.id):
            raise TotpAlreadyEnabled
        reauthenticated = False
        if await self.factors.enrolled(identity.id):
            if not recent_mfa:
                raise StepUpRequired
        elif not recent_login:
            if password is None:
                raise ReauthenticationRequired
            await self.authenticator.check_password(identity.email, password, ip=ip)
            reauthenticated = True
        secret = pyotp.random_base32()  # 32 symbols: 160 bits
        if not await self.totp.start(identity.id, self.box.seal(identity.id, secret)):
            raise TotpAlreadyEnabled
        uri = pyotp.TOTP(secret).provisioning_uri(name=identity.email, issuer_name=self.issuer_name)
        return TotpEnrolment(secret, uri, reauthenticated)

    async def confirm(self, *, user_id: str, code: str) -> bool:
        """Turn the pending secret into a second factor; True when it is the
        account's first (MFA turns on: the caller hands out recovery codes).

        The confirming code is spent: it cannot log in afterwards.

        Raises:
            TotpAlreadyEnabled: confirmed already.
            CeremonyFailed: `totp_not_pending` (no enrolment started, or it was
                replaced meanwhile) or `totp_code_invalid`.
        """
        uid = uuid.UUID(user_id)
        row = await self.totp.get(uid)
        if row is None:
            raise CeremonyFailed("totp_not_pending", user_id=user_id)
        if row.confirmed_at is not None:
            raise TotpAlreadyEnabled
        step = self._step_of(uid, row.secret_sealed, code)
        if step is None:
            raise CeremonyFailed("totp_code_invalid", user_id=user_id)
        first = not await self.factors.enrolled(uid)
        if not await self.totp.confirm(uid, sealed=row.secret_sealed, step=step):
            raise CeremonyFailed("totp_not_pending", user_id=user_id)
        return first

    async def status(self, user_id: str) -> tuple[bool, bool]:
        """(enabled, pending) of the account's TOTP."""
        row = await self.totp.get(uuid.UUID(user_id))
        if row is None:
            return False, False
        return row.confirmed_at is not None, row.confirmed_at is None

    async def remove(self, user_id: str) -> bool:
        """Remove the account's TOTP; True when no second factor is left.

        Raises:
            TotpNotEnabled
        """
        removed, mfa_off = await self.totp.remove(uuid.UUID(user_id))
        if not removed:
            raise TotpNotEnabled
        return mfa_off

    # --- login ----------------------------------------------------------------

    async def verify_login_code(self, *, user_id: str, code: str) -> None:
        """Check a login's code and spend its time step.

        Every attempt is counted before the check (per account, whatever the
        network), and the counters reset only on a right code: each password
        login buys one guess, and these limits bound how many such guesses
        an attacker who has the password gets (docs/RATE_LIMITS.md).

        Raises:
            RateLimited: too many codes tried for this account.
            CeremonyFailed: `totp_not_enrolled`, `totp_code_invalid`,
                `totp_code_replayed` (its step, or a later one, was accepted),
                `totp_secret_unreadable` (sealed under another key).
        """
        for limit in self.limits:
            decision = await self.limiter.hit(limit, user_id)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, limit.scope)
        uid = uuid.UUID(user_id)
        row = await self.totp.get(uid)
        if row is None or row.confirmed_at is None:
            raise CeremonyFailed("totp_not_enrolled", user_id=user_id)
        step = self._step_of(uid, row.secret_sealed, code)
        if step is None:
            raise CeremonyFailed("totp_code_invalid", user_id=user_id)
        if not await self.totp.use_step(uid, step):
            raise CeremonyFailed("totp_code_replayed", user_id=user_id)
        for limit in self.limits:
            await self.limiter.reset(limit, user_id)

    def _step_of(self, uid: uuid.UUID, sealed: str, code: str) -> int | None:
        """The time step whose code `code` is, within the drift window; None if none."""
        digits = _clean(code)
        if digits is None:
            return None
        try:
            secret = self.box.open(uid, sealed)
        except SealedSecretUnreadable:
            # Sealed under another TOTP_ENCRYPTION_KEY (a key replaced without
            # re-enrolment) or tampered with: no code can match. Loud in the
            # audit trail (the reason), never a 500.
            raise CeremonyFailed("totp_secret_unreadable", user_id=str(uid)) from None
        totp = pyotp.TOTP(secret)
        now = self.clock()
        current = totp.timecode(now)
        # Every candidate is computed and compared in constant time: the
        # answer's timing says nothing about how close a guess was.
        match = None
        for offset in range(-_DRIFT_STEPS, _DRIFT_STEPS + 1):
            if hmac.compare_digest(digits, totp.at(now, counter_offset=offset)) and match is None:
                match = current + offset
        return match

    async def _identity(self, user_id: str) -> Identity:
        identity = await self.identities.active_by_id(uuid.UUID(user_id))
        if identity is None:
            raise TotpNotEnabled
        return identity
