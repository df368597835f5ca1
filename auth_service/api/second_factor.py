"""Edge helpers of the passkey and MFA routers: the step-up dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth_service.api.deps import Ctx, CurrentUser
from auth_service.api.oauth_forms import NO_STORE, token_response
from auth_service.api.problems import step_up_problem
from auth_service.services.second_factor.second_step import recent_second_factor
from shared.audit.events import audit_event
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims

__all__ = [
    "NO_STORE",
    "RecentMfaUser",
    "audit_step_up_denied",
    "reauthentication_failed_problem",
    "recent_mfa_user",
    "token_response",
]


def audit_step_up_denied(request: Request, claims: AccessClaims, reason: str) -> None:
    """The `step_up` event: an action refused for want of a recent factor."""
    audit_event(
        "step_up",
        outcome="denied",
        request=request,
        user_id=claims.sub,
        session_id=claims.sid,
        reason=reason,
        path=request.url.path,
    )


async def recent_mfa_user(request: Request, claims: CurrentUser, ctx: Ctx) -> AccessClaims:
    max_age = ctx.settings.step_up_max_age_seconds
    if not recent_second_factor(claims, max_age=max_age):
        audit_step_up_denied(request, claims, "no_recent_second_factor")
        raise step_up_problem(max_age)
    return claims


# A user whose session proved a second factor (amr hwk/otp) recently.
RecentMfaUser = Annotated[AccessClaims, Depends(recent_mfa_user)]


def reauthentication_failed_problem() -> Problem:
    """The password sent to re-authenticate was wrong. Not 401: the bearer
    token is fine, and a client that refreshes on 401 would send the password
    a second time."""
    return Problem(403, "Forbidden", "The password is not right.", slug="reauthentication-failed")
