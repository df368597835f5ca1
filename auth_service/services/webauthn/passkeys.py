"""Passkeys: enrolment, listing, removal and passwordless login.

The RP-side state of each ceremony lives in the challenge store (single-use,
bound to ceremony and user); the credential records live in SQL. Every
failure raises `CeremonyFailed` with an audit reason; the edge picks the
status code.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from auth_service.errors import (
    CeremonyFailed,
    CredentialExists,
    CredentialNotFound,
    LastCredential,
    RateLimited,
    ReauthenticationRequired,
    StepUpRequired,
)
from auth_service.models.identity import Identity
from auth_service.models.webauthn import WebAuthnCredential
from auth_service.repositories.credentials import CredentialRepository, Removal
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.authentication import Authenticator, TokenGrant
from auth_service.services.second_factor.factors import AccountFactors
from auth_service.services.service import service
from auth_service.services.webauthn.ceremonies import (
    assertion_credential_id,
    client_challenge,
    verify_assertion,
    verify_registration,
)
from auth_service.services.webauthn.options import (
    KnownCredential,
    authentication_options,
    registration_options,
)
from auth_service.services.webauthn.relying_party import RelyingParty
from auth_service.stores.challenges import Ceremony, ChallengeStore
from auth_service.stores.rate_limit import Limit, RateLimiter

# Passwordless login is "something you have + something you are/know" in one
# gesture (UV is required), hence `hwk` + `user` (RFC 8176 §2).
PASSWORDLESS_AMR = ("hwk", "user")
# Enough for every device a person owns; bounds rows an account can create.
MAX_PASSKEYS_PER_ACCOUNT = 20


def user_handle(user_id: uuid.UUID) -> bytes:
    """The WebAuthn user handle (L3 §5.4.3, user.id) of an account.

    The account's random UUIDv4: opaque, no personal data, at most 64 bytes
    as L3 §14.6.1 asks, and stable, so userHandle in an assertion maps back
    to one account without another lookup table.
    """
    return user_id.bytes


@dataclass(frozen=True)
class Enrolment:
    credential: WebAuthnCredential
    first: bool  # the account's first second factor: MFA is on from now


@dataclass(frozen=True)
class EnrolmentStart:
    options_json: str
    # The password was checked again for this ceremony (first passkey after
    # a login that is not recent): the caller audits it.
    reauthenticated: bool


@service
class PasskeyService:
    rp: RelyingParty
    credentials: CredentialRepository
    identities: IdentityRepository
    challenges: ChallengeStore
    authenticator: Authenticator
    factors: AccountFactors
    limiter: RateLimiter
    options_limit: Limit

    # --- enrolment (L3 §7.1) ---------------------------------------------

    async def registration_options(
        self,
        *,
        user_id: str,
        recent_mfa: bool,
        recent_login: bool,
        password: str | None = None,
        ip: str = "",
    ) -> EnrolmentStart:
        """Creation options for the bearer's account.

        Adding a passkey to an account that has one already needs a recent
        second factor: otherwise a session from before MFA was turned on (a
        stolen password-only token) could add the thief's own passkey.

        The first passkey turns MFA on and comes with the recovery codes, so
        whoever enrols it decides who can log in from then on. It needs a
        recent login (`recent_login`: the session's `auth_time`, which a
        refresh keeps) or the password again: a stolen refresh token alone
        must not be able to lock the owner out (docs/PASSKEYS.md, "The first
        passkey"). The password check is a login attempt: same limits, same
        cost, same errors.

        Raises:
            StepUpRequired, ReauthenticationRequired, InvalidCredentials (wrong
            password), RateLimited (login limits), CredentialNotFound (no such
            account), CredentialExists (the per-account limit is reached).
        """
        identity = await self._identity(user_id)
        existing = await self.credentials.for_user(identity.id)
        # Any second factor counts, a TOTP too: with one on, a passkey is a
        # further factor and needs the same step-up.
        has_factor = bool(existing) or await self.factors.enrolled(identity.id)
        reauthenticated = False
        if has_factor and not recent_mfa:
            raise StepUpRequired
        if not has_factor and not recent_login:
            if password is None:
                raise ReauthenticationRequired
            await self.authenticator.check_password(identity.email, password, ip=ip)
            reauthenticated = True
        if len(existing) >= MAX_PASSKEYS_PER_ACCOUNT:
            raise CredentialExists
        challenge = await self.challenges.begin(Ceremony.REGISTER, user_id=user_id)
        options = registration_options(
            rp=self.rp,
            user_handle=user_handle(identity.id),
            user_name=identity.email,
            challenge=challenge,
            exclude=[descriptor_of(c) for c in existing],
        )
        return EnrolmentStart(options, reauthenticated)

    async def register(
        self,
        *,
        user_id: str,
        credential: Mapping[str, Any],
        label: str | None,
        sid: str | None = None,
    ) -> Enrolment:
        """Verify an attestation response and store the new passkey.

        Raises:
            CeremonyFailed: the response did not verify; the reason says why
                (`challenge_unknown` covers expired, replayed and other-ceremony
                challenges, `challenge_other_user` a challenge issued to
                someone else).
            CredentialExists: the credential id is registered already.
        """
        pending = await self.challenges.take(Ceremony.REGISTER, client_challenge(credential))
        if pending is None:
            raise CeremonyFailed("challenge_unknown", user_id=user_id)
        if pending.user_id != user_id:
            raise CeremonyFailed("challenge_other_user", user_id=user_id)
        try:
            new = verify_registration(
                credential=credential, expected_challenge=pending.challenge, expected_rp=self.rp
            )
        except CeremonyFailed as exc:
            exc.user_id = user_id
            raise
        identity = await self._identity(user_id)
        count = await self.credentials.count(identity.id)
        first = not await self.factors.enrolled(identity.id)
        row = await self.credentials.add(
            user_id=identity.id, new=new, label=label or f"Passkey {count + 1}", enrolled_sid=sid
        )
        if row is None:
            raise CredentialExists
        return Enrolment(credential=row, first=first)

    # --- management -------------------------------------------------------

    async def list(self, user_id: str) -> list[WebAuthnCredential]:
        return await self.credentials.for_user(uuid.UUID(user_id))

    async def remove(self, *, user_id: str, row_id: uuid.UUID, confirm_last: bool) -> bool:
        """Remove a passkey; returns True when it was the account's last one.

        Raises:
            CredentialNotFound: not the caller's (or no such passkey).
            LastCredential: the last passkey, without `confirm_last`.
        """
        outcome = await self.credentials.remove(
            user_id=uuid.UUID(user_id), row_id=row_id, allow_last=confirm_last
        )
        if outcome is Removal.NOT_FOUND:
            raise CredentialNotFound
        if outcome is Removal.LAST_NEEDS_CONFIRMATION:
            raise LastCredential
        return outcome is Removal.REMOVED_LAST

    # --- assertions (L3 §7.2) ---------------------------------------------

    async def verify_for(
        self,
        *,
        credential: Mapping[str, Any],
        expected_challenge: bytes,
        expected_user_id: str | None,
    ) -> WebAuthnCredential:
        """Verify an assertion and record its use; returns the credential used.

        Args:
            credential: the browser's PublicKeyCredential JSON.
            expected_challenge: the pending ceremony's challenge.
            expected_user_id: the user who must own the credential (MFA), or
                None for passwordless login, where the user handle decides.

        Raises:
            CeremonyFailed: unknown credential, someone else's credential, or
                any failed check of `verify_assertion`.
        """
        cred_id = assertion_credential_id(credential)
        stored = await self.credentials.by_credential_id(cred_id)
        if stored is None:
            raise CeremonyFailed("unknown_credential", user_id=expected_user_id)
        owner = str(stored.user_id)
        if expected_user_id is not None and owner != expected_user_id:
            # L3 §7.2 step 5/6: the credential must be one of this user's.
            raise CeremonyFailed("credential_not_owned", user_id=expected_user_id)
        try:
            verified = verify_assertion(
                credential=credential,
                expected_challenge=expected_challenge,
                expected_rp=self.rp,
                expected_user_handle=user_handle(stored.user_id),
                require_user_handle=expected_user_id is None,
                credential_public_key=stored.public_key,
                credential_sign_count=stored.sign_count,
                credential_backup_eligible=stored.backup_eligible,
            )
        except CeremonyFailed as exc:
            exc.user_id = expected_user_id or owner
            raise
        recorded = await self.credentials.record_use(
            stored.id,
            expected_sign_count=stored.sign_count,
            new_sign_count=verified.new_sign_count,
            backed_up=verified.backed_up,
        )
        if not recorded:
            # Another assertion with this credential was recorded between our
            # read and our write: the counter moved under us.
            raise CeremonyFailed("sign_count_race", user_id=owner)
        return stored

    # --- passwordless login -------------------------------------------------

    async def login_options(self, *, ip: str) -> str:
        """Request options for a discoverable-credential login.

        Takes no email, so the answer is the same for everyone and says
        nothing about which accounts exist. Rate-limited per IP because
        anyone may ask and each answer costs a Redis key until its TTL.

        Raises:
            RateLimited
        """
        decision = await self.limiter.hit(self.options_limit, ip)
        if not decision.allowed:
            raise RateLimited(decision.retry_after, self.options_limit.scope)
        challenge = await self.challenges.begin(Ceremony.LOGIN, user_id=None)
        return authentication_options(rp=self.rp, challenge=challenge, allow=[])

    async def login(self, *, credential: Mapping[str, Any], ip: str, user_agent: str) -> TokenGrant:
        """Verify a discoverable-credential assertion and start a session.

        Raises:
            CeremonyFailed
        """
        pending = await self.challenges.take(Ceremony.LOGIN, client_challenge(credential))
        if pending is None:
            raise CeremonyFailed("challenge_unknown")
        stored = await self.verify_for(
            credential=credential, expected_challenge=pending.challenge, expected_user_id=None
        )
        identity = await self.identities.active_by_id(stored.user_id)
        if identity is None:
            raise CeremonyFailed("account_inactive", user_id=str(stored.user_id))
        return await self.authenticator.start_session(
            identity, amr=PASSWORDLESS_AMR, ip=ip, user_agent=user_agent
        )

    async def _identity(self, user_id: str) -> Identity:
        identity = await self.identities.active_by_id(uuid.UUID(user_id))
        if identity is None:
            raise CredentialNotFound
        return identity


def descriptor_of(c: WebAuthnCredential) -> KnownCredential:
    return KnownCredential(credential_id=c.credential_id, transports=tuple(c.transport_list))
