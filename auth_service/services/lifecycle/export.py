"""The data export (`GET /users/me/export`): what the platform holds about a user.

Gathered from both services: here the identity (never the password hash),
sessions, passkeys' metadata (never public keys), how many recovery codes are
left (never the codes, which only exist as keyed hashes) and the audit events
about the account; from the user service (its internal export route, with a
`profiles:read` service token) the profile and that service's audit events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from auth_service.errors import InvalidCredentials
from auth_service.models import Identity, WebAuthnCredential
from auth_service.peers.user_service import UserServiceClient
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.recovery_codes import RecoveryCodeRepository
from auth_service.services.service import service
from auth_service.stores.sessions import SessionInfo, SessionStore
from shared.audit.store import AuditStore

__all__ = ["AccountData", "AccountExport"]


@dataclass(frozen=True)
class AccountData:
    identity: Identity
    sessions: list[SessionInfo]
    passkeys: list[WebAuthnCredential]
    recovery_codes_remaining: int
    audit_events: list[dict[str, Any]]
    audit_events_truncated: bool
    # The user service's part: {profile, audit_events, audit_events_truncated}.
    user_service: dict[str, Any]


@service
class AccountExport:
    identities: IdentityRepository
    credentials: CredentialRepository
    codes: RecoveryCodeRepository
    sessions: SessionStore
    audit: AuditStore
    users: UserServiceClient

    async def export(self, user_id: str) -> AccountData:
        """Everything held about `user_id`.

        Raises:
            InvalidCredentials: the account is gone (its token outlived it).
            UpstreamUnavailable: the user service could not answer; an export
                without the profile would not be everything.
        """
        uid = uuid.UUID(user_id)
        identity = await self.identities.active_by_id(uid)
        if identity is None:
            raise InvalidCredentials
        events, truncated = await self.audit.about(user_id)
        return AccountData(
            identity=identity,
            sessions=await self.sessions.list(user_id),
            passkeys=await self.credentials.for_user(uid),
            recovery_codes_remaining=await self.codes.remaining(uid),
            audit_events=events,
            audit_events_truncated=truncated,
            user_service=await self.users.export(user_id),
        )
