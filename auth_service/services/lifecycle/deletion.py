"""Deleting an account (`DELETE /users/me`): everything it owns, everywhere.

What goes, in this order (docs/ACCOUNTS.md, "Deleting an account"):

1. The password is checked like a login (same limits, same counters): a
   stolen access token alone cannot erase the account.
2. The profile, at the user service. This is the first change: if the user
   service is down the deletion fails (503) with nothing changed, and the
   client retries. No outbox: a deletion that answered 204 but left the
   profile behind for later would break the promise the 204 makes.
3. Every row the account owns in this service's database, in one
   transaction (`ACCOUNT_OWNED`: identity, password hash, passkeys, recovery
   codes, and whatever table joins that list).
4. Every session with its refresh-token records (each revocation is
   published, so resource servers refuse the sessions' access tokens within
   a second), and live one-time links.

A failure after step 2 leaves a state the same request finishes: the profile
deletion is idempotent, and the account can still log in until step 3 has
committed. The audit trail keeps the account's events under its bare id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from auth_service.errors import InvalidCredentials
from auth_service.peers.user_service import UserServiceClient
from auth_service.repositories.accounts import AccountRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.authentication import Authenticator
from auth_service.services.service import service
from auth_service.stores.one_time_tokens import OneTimeTokens
from auth_service.stores.sessions import SessionStore

__all__ = ["AccountDeletion", "Deleted"]


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed: rows per table and sessions revoked."""

    rows: dict[str, int]
    sessions_revoked: int


@service
class AccountDeletion:
    identities: IdentityRepository
    accounts: AccountRepository
    authenticator: Authenticator
    users: UserServiceClient
    sessions: SessionStore
    # Every kind of mailed link (reset; verification joins it): none may
    # outlive the account.
    one_time_tokens: Sequence[OneTimeTokens]

    async def delete(self, *, user_id: str, password: str, ip: str) -> Deleted:
        """Erase the account `user_id` after checking its password.

        Raises:
            RateLimited: the login limits for this account or IP are spent.
            InvalidCredentials: wrong password (or the account is gone).
            UpstreamUnavailable: the user service could not delete the
                profile; nothing was changed.
        """
        identity = await self.identities.active_by_id(uuid.UUID(user_id))
        if identity is None:
            raise InvalidCredentials
        checked = await self.authenticator.check_password(identity.email, password, ip=ip)
        if checked.id != identity.id:  # cannot happen: the email is unique
            raise InvalidCredentials
        await self.users.delete_profile(user_id)
        # The rows before the sessions: once the identity is gone no refresh
        # mints a token (Authenticator.refresh re-reads the account), so a
        # session created by a login racing this deletion dies at its first
        # refresh, and its access token within its lifetime.
        rows = await self.accounts.erase(identity.id)
        revoked = await self.sessions.forget_user(user_id)
        for tokens in self.one_time_tokens:
            await tokens.retire(user_id)
        return Deleted(rows=rows, sessions_revoked=revoked)
