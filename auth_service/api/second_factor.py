"""Edge helpers of the passkey and MFA routers: step-up dependency, problem mapping."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from auth_service.api.deps import Ctx, CurrentUser, to_problem
from auth_service.errors import (
    CeremonyFailed,
    CredentialExists,
    CredentialNotFound,
    LastCredential,
    PasskeyRequired,
    ReauthenticationRequired,
    StepUpRequired,
)
from auth_service.schemas.accounts import TokenResponse
from auth_service.services.authentication import TokenGrant
from auth_service.services.second_factor.second_step import recent_second_factor
from shared.audit.events import audit_event
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims

# RFC 6749 §5.1: token responses must not be cached by anyone.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_response(grant: TokenGrant) -> TokenResponse:
    return TokenResponse(
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token,
        scope=grant.scope,
        user_id=uuid.UUID(grant.user_id),
    )


def step_up_problem(max_age: int) -> Problem:
    """403 with an RFC 9470 style challenge.

    RFC 9470 §3 answers 401, but docs/ARCHITECTURE.md gives 403: the token is valid, the
    authentication behind it is merely too weak or too old for this action.
    The `WWW-Authenticate` parameters still tell a client what to do (RFC
    6750 §3 allows the challenge on 403, as for insufficient_scope).
    """
    return Problem(
        403,
        "Forbidden",
        "This action needs a recent second factor: sign in again with a passkey "
        f"(or a recovery code) within the last {max_age} seconds.",
        slug="step-up-required",
        headers={
            "WWW-Authenticate": 'Bearer realm="auth-service", '
            'error="insufficient_user_authentication", '
            'error_description="A recent second factor is required", '
            f'max_age="{max_age}"'
        },
        extra={"max_age": max_age},
    )


async def recent_mfa_user(request: Request, claims: CurrentUser, ctx: Ctx) -> AccessClaims:
    max_age = ctx.settings.step_up_max_age_seconds
    if not recent_second_factor(claims, max_age=max_age):
        audit_event(
            "step_up",
            outcome="denied",
            request=request,
            user_id=claims.sub,
            session_id=claims.sid,
            reason="no_recent_second_factor",
            path=request.url.path,
        )
        raise step_up_problem(max_age)
    return claims


# A user whose session proved a second factor (amr hwk/otp) recently.
RecentMfaUser = Annotated[AccessClaims, Depends(recent_mfa_user)]


def reauthentication_problem(max_age: int) -> Problem:
    """403 for the first passkey after a login that is not recent (RFC 9470 style).

    403, as for step-up: the token is valid; the login behind it is too old
    for this action. The password in the request body (or a fresh login)
    answers it.
    """
    return Problem(
        403,
        "Forbidden",
        "Adding your first passkey turns on two-step login: confirm your password "
        f"(send `password`), or log in again; a login counts for {max_age} seconds.",
        slug="reauthentication-required",
        headers={
            "WWW-Authenticate": 'Bearer realm="auth-service", '
            'error="insufficient_user_authentication", '
            'error_description="A recent login or the password is required", '
            f'max_age="{max_age}"'
        },
        extra={"max_age": max_age},
    )


def reauthentication_failed_problem() -> Problem:
    """The password sent to re-authenticate was wrong. Not 401: the bearer
    token is fine, and a client that refreshes on 401 would send the password
    a second time."""
    return Problem(403, "Forbidden", "The password is not right.", slug="reauthentication-failed")


def second_factor_problem(
    exc: Exception, *, ceremony_status: int, max_age: int, reauth_age: int = 0
) -> Problem:
    """Map a passkey/MFA domain error to its problem.

    Every `CeremonyFailed` gets the same body whatever its reason: telling a
    client *which* check failed would help whoever is forging responses.
    The reason goes to the audit trail instead.
    """
    if isinstance(exc, CeremonyFailed):
        if exc.reason == "mfa_token_unknown":
            return Problem(
                401,
                "Unauthorized",
                "The MFA token is unknown, expired or already used; log in again.",
                slug="mfa-token-invalid",
            )
        return Problem(
            ceremony_status,
            "Unauthorized" if ceremony_status == 401 else "Bad Request",
            "The passkey response or recovery code could not be verified.",
            slug="webauthn-failed",
        )
    if isinstance(exc, StepUpRequired):
        return step_up_problem(max_age)
    if isinstance(exc, ReauthenticationRequired):
        return reauthentication_problem(reauth_age)
    if isinstance(exc, CredentialNotFound):
        return Problem(404, detail="No such passkey.", slug="passkey-not-found")
    if isinstance(exc, LastCredential):
        return Problem(
            409,
            "Conflict",
            "This is the account's last passkey. Removing it turns two-step login "
            "off and deletes the recovery codes; repeat with ?confirm_last=true to proceed.",
            slug="last-passkey",
        )
    if isinstance(exc, CredentialExists):
        return Problem(
            409,
            "Conflict",
            "This authenticator is registered already, or the account has the "
            "maximum number of passkeys.",
            slug="passkey-exists",
        )
    if isinstance(exc, PasskeyRequired):
        return Problem(
            409,
            "Conflict",
            "Recovery codes need a passkey on the account; add one first.",
            slug="passkey-required",
        )
    return to_problem(exc)
