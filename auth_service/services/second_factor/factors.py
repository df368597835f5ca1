"""Which second factors an account has: passkeys, TOTP, or both."""

from __future__ import annotations

import uuid

from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.second_factors import SecondFactorReads
from auth_service.repositories.totp import TotpRepository

__all__ = ["TOTP", "WEBAUTHN", "AccountFactors"]

# The `methods` of an mfa_required answer.
WEBAUTHN = "webauthn"
TOTP = "totp"


class AccountFactors:
    """The second factors of an account, whatever their kind.

    `enrolled` is the password-login gate (`Authenticator.second_factors`):
    an account with any second factor gets no tokens from its password alone.
    Every password login asks it, so it is one statement (`SecondFactorReads`).
    """

    def __init__(
        self,
        *,
        credentials: CredentialRepository,
        totp: TotpRepository,
        any_factor: SecondFactorReads,
    ) -> None:
        self._credentials = credentials
        self._totp = totp
        self._any = any_factor

    async def methods(self, user_id: uuid.UUID) -> list[str]:
        found = []
        if await self._credentials.enrolled(user_id):
            found.append(WEBAUTHN)
        if await self._totp.enrolled(user_id):
            found.append(TOTP)
        return found

    async def enrolled(self, user_id: uuid.UUID) -> bool:
        return await self._any.any_enrolled(user_id)
