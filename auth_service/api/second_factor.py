"""Edge helpers of the passkey, TOTP and MFA routers: the step-up dependency
and the gate in front of enrolling a second factor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from pydantic import SecretStr

from auth_service.api.auditing import audited_failure
from auth_service.api.deps import Ctx, CurrentUser, ip_of
from auth_service.api.oauth_forms import NO_STORE, token_response
from auth_service.api.problems import ProblemOptions, step_up_problem, to_problem
from auth_service.context import AuthContext
from auth_service.errors import (
    InvalidCredentials,
    RateLimited,
    ReauthenticationRequired,
    StepUpRequired,
)
from auth_service.services.second_factor.second_step import recent_login, recent_second_factor
from shared.audit.events import audit_event
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims

__all__ = [
    "NO_STORE",
    "RecentMfaUser",
    "audit_step_up_denied",
    "gated_enrolment",
    "reauthentication_failed_problem",
    "recent_mfa_user",
    "token_response",
]


class _Started(Protocol):
    @property
    def reauthenticated(self) -> bool: ...


S = TypeVar("S", bound=_Started)


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


async def gated_enrolment(
    request: Request,
    claims: AccessClaims,
    ctx: AuthContext,
    password: SecretStr | None,
    start: Callable[..., Awaitable[S]],
    *,
    purpose: str,
    failure_event: str | None = None,
) -> S:
    """Start enrolling a second factor (`start`: the service's first step)
    behind the gate every second factor shares (docs/PASSKEYS.md): the first
    one needs a recent login or the password, a later one a recent second
    factor, so a stolen session alone cannot add a factor of its own.

    A refusal is audited as the step-up or re-authentication it lacked; a
    wrong password is a failed login attempt (counted, and in the trail);
    any other failure is audited as `failure_event` when given.
    """
    max_age = ctx.settings.step_up_max_age_seconds
    reauth_age = ctx.settings.enrol_reauth_max_age_seconds
    who = {"user_id": claims.sub, "session_id": claims.sid}
    try:
        started = await start(
            user_id=claims.sub,
            recent_mfa=recent_second_factor(claims, max_age=max_age),
            recent_login=recent_login(claims, max_age=reauth_age),
            password=password.get_secret_value() if password else None,
            ip=ip_of(request),
        )
    except Exception as exc:
        if isinstance(exc, StepUpRequired | ReauthenticationRequired):
            missing = "second_factor" if isinstance(exc, StepUpRequired) else "login"
            audit_step_up_denied(request, claims, f"no_recent_{missing}")
        elif isinstance(exc, InvalidCredentials | RateLimited):
            audited_failure("reauthentication", exc, request, purpose=purpose, **who)
            if isinstance(exc, InvalidCredentials):
                raise reauthentication_failed_problem() from None
        elif failure_event is not None:
            audited_failure(failure_event, exc, request, **who)
        raise to_problem(exc, ProblemOptions(max_age=max_age, reauth_age=reauth_age)) from None
    if started.reauthenticated:
        audit_event("reauthentication", outcome="success", request=request, purpose=purpose, **who)
    return started
