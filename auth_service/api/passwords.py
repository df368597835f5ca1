"""Password change, forgot-password and reset (docs/ASVS.md V6)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited_failure
from auth_service.api.deps import Ctx, CurrentUser, ip_of, to_problem
from auth_service.errors import (
    InvalidCredentials,
    InvalidOneTimeToken,
    MailUnavailable,
    WeakPassword,
)
from auth_service.schemas.lifecycle import (
    Accepted,
    PasswordChangeRequest,
    PasswordForgotRequest,
    PasswordResetRequest,
)
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses
from shared.http.problems import Problem

router = APIRouter(tags=["passwords"])

_NO_STORE = {"Cache-Control": "no-store"}
# One body for every forgot-password answer: it must not say whether the
# email has an account (OWASP ASVS 5.0 V6.3.x, account enumeration).
_FORGOT_ACCEPTED = Accepted(
    detail="If an account uses this email, a link to reset its password has been sent to it."
)


def _problem(exc: Exception, *, field: str = "new_password") -> Problem:
    if isinstance(exc, InvalidCredentials):
        return Problem(
            401, "Unauthorized", "The current password is not correct.", slug="invalid-credentials"
        )
    if isinstance(exc, WeakPassword):
        return Problem(
            422,
            "Invalid request",
            "The new password does not meet the policy.",
            slug="validation",
            errors=[{"field": field, "message": m} for m in exc.problems],
        )
    if isinstance(exc, InvalidOneTimeToken):
        return Problem(
            400,
            "Bad Request",
            "The reset link is not valid: it was used already, has expired, or a newer one "
            "was sent. Ask for a new one.",
            slug="invalid-token",
        )
    if isinstance(exc, MailUnavailable):
        return Problem(
            503,
            "Service Unavailable",
            "Password reset by mail is not available: no mail server is configured.",
            slug="mail-unavailable",
        )
    return to_problem(exc)


@router.post(
    "/password/change",
    status_code=204,
    responses=problem_responses(401, 422, 429, 503),
    summary="Change the password; every other session of the account is signed out",
)
async def change_password(
    body: PasswordChangeRequest, request: Request, claims: CurrentUser, ctx: Ctx
) -> Response:
    assert claims.sid is not None  # current_user admits user tokens only
    who = {"user_id": claims.sub, "session_id": claims.sid}
    try:
        revoked = await ctx.passwords.change(
            user_id=claims.sub,
            sid=claims.sid,
            current_password=body.current_password.get_secret_value(),
            new_password=body.new_password.get_secret_value(),
            ip=ip_of(request),
        )
    except Exception as exc:
        raise _problem(audited_failure("password.change", exc, request, **who)) from None
    audit_event(
        "password.change", outcome="success", request=request, sessions_revoked=revoked, **who
    )
    return Response(status_code=204, headers=_NO_STORE)


@router.post(
    "/password/forgot",
    status_code=202,
    response_model=Accepted,
    responses=problem_responses(422, 429, 503),
    summary="Mail a password reset link (same answer whether or not the email has an account)",
)
async def forgot_password(body: PasswordForgotRequest, request: Request, ctx: Ctx) -> JSONResponse:
    try:
        user_id = await ctx.passwords.forgot(body.email, ip=ip_of(request))
    except Exception as exc:
        raise _problem(audited_failure("password.forgot", exc, request)) from None
    # The trail may say which account was asked for; the client may not.
    audit_event(
        "password.forgot",
        outcome="success",
        request=request,
        user_id=user_id,
        account_found=user_id is not None,
    )
    return JSONResponse(_FORGOT_ACCEPTED.model_dump(), status_code=202, headers=_NO_STORE)


@router.post(
    "/password/reset",
    status_code=204,
    responses=problem_responses(400, 422, 503),
    summary="Set a new password with a mailed reset token; every session is signed out",
)
async def reset_password(body: PasswordResetRequest, request: Request, ctx: Ctx) -> Response:
    try:
        user_id, revoked = await ctx.passwords.reset(
            token=body.token, new_password=body.new_password.get_secret_value()
        )
    except Exception as exc:
        raise _problem(audited_failure("password.reset", exc, request)) from None
    audit_event(
        "password.reset",
        outcome="success",
        request=request,
        user_id=user_id,
        sessions_revoked=revoked,
    )
    return Response(status_code=204, headers=_NO_STORE)
