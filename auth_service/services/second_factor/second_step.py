"""The second step of a password login, step-up checks, and recovery codes.

`POST /login` with the right password for an account with a second factor
(a passkey, TOTP, or both) ends in `SecondFactorRequired`; `begin` turns that
into an opaque, single-use, short-lived `mfa_token` bound to the user and to
one WebAuthn challenge. `POST /login/mfa` spends the token with an assertion
(amr `pwd hwk`), a TOTP code or a recovery code (amr `pwd otp`). The token is consumed by the
first attempt whatever its outcome, so each password check buys exactly one
second-factor guess.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auth_service.errors import CeremonyFailed, PasskeyRequired
from auth_service.models.identity import Identity
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.recovery_codes import RecoveryCodeRepository
from auth_service.services.authentication import Authenticator, TokenGrant
from auth_service.services.second_factor.factors import WEBAUTHN, AccountFactors
from auth_service.services.second_factor.recovery_codes import (
    generate_codes,
    hash_code,
    normalize_code,
)
from auth_service.services.second_factor.totp import TOTP_AMR, TotpService
from auth_service.services.service import service
from auth_service.services.webauthn.options import authentication_options, options_dict
from auth_service.services.webauthn.passkeys import PasskeyService, descriptor_of
from auth_service.services.webauthn.relying_party import RelyingParty
from auth_service.stores.challenges import ChallengeStore
from shared.tokens.claims import AccessClaims

# RFC 8176 §2: `hwk` proof of possession of a hardware-protected key, `otp`
# a one-time code; `pwd` the password checked in the first step.
PASSKEY_AMR = ("pwd", "hwk")
RECOVERY_AMR = ("pwd", "otp")
SECOND_FACTOR_AMR = frozenset({"hwk", "otp"})


def recent_second_factor(claims: AccessClaims, *, max_age: int, now: float | None = None) -> bool:
    """Whether the token's session proved a second factor within `max_age` seconds.

    Reads `amr` and `auth_time` (OpenID Connect Core §2, RFC 8176), which the
    session keeps across refreshes: refreshing a token never makes an old
    authentication recent (RFC 9470 §4, `max_age`).
    """
    if not SECOND_FACTOR_AMR.intersection(claims.amr) or claims.auth_time is None:
        return False
    age = (time.time() if now is None else now) - claims.auth_time
    return -60 <= age <= max_age  # a minute of clock skew between replicas


def recent_login(claims: AccessClaims, *, max_age: int, now: float | None = None) -> bool:
    """Whether the token's session began with a login (any factor) within `max_age` seconds.

    `auth_time` is when the user last authenticated interactively (OpenID
    Connect Core §2); a refresh keeps it, so a stolen refresh token never
    makes a recent login. `max_age` 0: never recent.
    """
    if max_age <= 0 or claims.auth_time is None:
        return False
    age = (time.time() if now is None else now) - claims.auth_time
    return -60 <= age <= max_age  # a minute of clock skew between replicas


@dataclass(frozen=True)
class MfaPending:
    user_id: str
    mfa_token: str
    expires_in: int
    # The account's second factors ("webauthn", "totp"), in that order.
    methods: list[str]
    # Request options for the account's passkeys; None without a passkey.
    webauthn: dict[str, Any] | None


@service
class MfaService:
    rp: RelyingParty
    credentials: CredentialRepository
    codes: RecoveryCodeRepository
    identities: IdentityRepository
    challenges: ChallengeStore
    passkeys: PasskeyService
    authenticator: Authenticator
    factors: AccountFactors
    totp: TotpService
    mfa_ttl: int
    code_count: int

    async def begin(self, user_id: str) -> MfaPending:
        """Issue the mfa_token and the request options for the user's passkeys.

        `allowCredentials` names the user's own credentials (L3 §5.5): the
        password already identified the user, and non-discoverable
        authenticators need the ids to find their key.
        """
        token, challenge = await self.challenges.begin_mfa(user_id=user_id)
        methods = await self.factors.methods(uuid.UUID(user_id))
        options = None
        if WEBAUTHN in methods:
            creds = await self.credentials.for_user(uuid.UUID(user_id))
            options = options_dict(
                authentication_options(
                    rp=self.rp, challenge=challenge, allow=[descriptor_of(c) for c in creds]
                )
            )
        return MfaPending(user_id, token, self.mfa_ttl, methods, options)

    async def complete_with_passkey(
        self, *, mfa_token: str, credential: Mapping[str, Any], ip: str, user_agent: str
    ) -> TokenGrant:
        """Spend the mfa_token with an assertion from one of the user's passkeys.

        Raises:
            CeremonyFailed: `mfa_token_unknown` (expired, replayed, never
                issued) or any reason from `PasskeyService.verify_for`.
        """
        pending = await self.challenges.take_mfa(mfa_token)
        if pending is None or pending.user_id is None:
            raise CeremonyFailed("mfa_token_unknown")
        await self.passkeys.verify_for(
            credential=credential,
            expected_challenge=pending.challenge,
            expected_user_id=pending.user_id,
        )
        identity = await self._active(pending.user_id)
        return await self.authenticator.start_session(
            identity, amr=PASSKEY_AMR, ip=ip, user_agent=user_agent
        )

    async def complete_with_totp(
        self, *, mfa_token: str, code: str, ip: str, user_agent: str
    ) -> TokenGrant:
        """Spend the mfa_token and a TOTP code (RFC 6238), once.

        Raises:
            CeremonyFailed: `mfa_token_unknown` or any reason from
                `TotpService.verify_login_code`.
            RateLimited: too many codes tried for the account.
        """
        pending = await self.challenges.take_mfa(mfa_token)
        if pending is None or pending.user_id is None:
            raise CeremonyFailed("mfa_token_unknown")
        await self.totp.verify_login_code(user_id=pending.user_id, code=code)
        identity = await self._active(pending.user_id)
        return await self.authenticator.start_session(
            identity, amr=TOTP_AMR, ip=ip, user_agent=user_agent
        )

    async def complete_with_recovery_code(
        self, *, mfa_token: str, code: str, ip: str, user_agent: str
    ) -> TokenGrant:
        """Spend the mfa_token and one recovery code.

        Raises:
            CeremonyFailed: `mfa_token_unknown` or `recovery_code_invalid`
                (wrong, spent, or from an older set).
        """
        pending = await self.challenges.take_mfa(mfa_token)
        if pending is None or pending.user_id is None:
            raise CeremonyFailed("mfa_token_unknown")
        user_id = uuid.UUID(pending.user_id)
        normalized = normalize_code(code)
        if normalized is None or not await self.codes.consume(
            user_id, hash_code(user_id, normalized)
        ):
            raise CeremonyFailed("recovery_code_invalid", user_id=pending.user_id)
        identity = await self._active(pending.user_id)
        return await self.authenticator.start_session(
            identity, amr=RECOVERY_AMR, ip=ip, user_agent=user_agent
        )

    async def remaining_codes(self, user_id: str) -> int:
        return await self.codes.remaining(uuid.UUID(user_id))

    async def new_recovery_codes(self, user_id: str) -> list[str]:
        """Replace the user's recovery codes; returns the plaintexts, once.

        Raises:
            PasskeyRequired: the account has no second factor to recover.
        """
        uid = uuid.UUID(user_id)
        if not await self.factors.enrolled(uid):
            raise PasskeyRequired
        codes = generate_codes(self.code_count)
        await self.codes.replace(uid, [hash_code(uid, normalize_code(c) or "") for c in codes])
        return codes

    async def _active(self, user_id: str) -> Identity:
        identity = await self.identities.active_by_id(uuid.UUID(user_id))
        if identity is None:
            raise CeremonyFailed("account_inactive", user_id=user_id)
        return identity
