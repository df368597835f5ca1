"""Email verification and email change (README.md, "Email verification and
email change").

`POST /email/verify` finishes both: the token says whether it verifies the
account's address or completes an email change (services/lifecycle/email.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited
from auth_service.api.deps import Ctx, CurrentUser, ip_of, to_problem
from auth_service.errors import (
    EmailAlreadyVerified,
    InvalidCredentials,
    InvalidOneTimeToken,
    MailUnavailable,
    SameEmail,
)
from auth_service.schemas.lifecycle import Accepted, EmailChangeRequest, EmailVerifyRequest
from shared.http.openapi import problem_responses
from shared.http.problems import Problem

router = APIRouter(tags=["email"])

_NO_STORE = {"Cache-Control": "no-store"}
_RESENT = Accepted(detail="A new verification link has been sent to the account's address.")
_CHANGE_SENT = Accepted(
    detail="A link has been sent to the new address; the account keeps its current "
    "address until that link is used."
)


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, InvalidOneTimeToken):
        return Problem(
            400,
            "Bad Request",
            "The verification link is not valid: it was used already, has expired, or a "
            "newer one was sent. Ask for a new one.",
            slug="invalid-token",
        )
    if isinstance(exc, InvalidCredentials):
        return Problem(
            401, "Unauthorized", "The password is not correct.", slug="invalid-credentials"
        )
    if isinstance(exc, EmailAlreadyVerified):
        return Problem(
            409,
            "Conflict",
            "The account's email address is verified already.",
            slug="email-already-verified",
        )
    if isinstance(exc, SameEmail):
        return Problem(
            422,
            "Invalid request",
            "The new address is the account's address already.",
            slug="validation",
            errors=[{"field": "new_email", "message": "is the account's current address"}],
        )
    if isinstance(exc, MailUnavailable):
        return Problem(
            503,
            "Service Unavailable",
            "Email verification is not available: no mail server is configured.",
            slug="mail-unavailable",
        )
    return to_problem(exc)


@router.post(
    "/email/verify",
    status_code=204,
    responses=problem_responses(400, 409, 422, 503),
    summary="Use a mailed link: verify the address, or complete an email change",
)
async def verify_email(body: EmailVerifyRequest, request: Request, ctx: Ctx) -> Response:
    async with audited("email.verify", request, problem=_problem) as audit:
        done = await ctx.email.verify(body.token)
        audit.success(
            user_id=done.user_id,
            purpose="email_change" if done.changed else "address",
            sessions_revoked=done.sessions_revoked,
        )
    return Response(status_code=204, headers=_NO_STORE)


@router.post(
    "/email/verify/resend",
    status_code=202,
    response_model=Accepted,
    responses=problem_responses(401, 409, 429, 503),
    summary="Mail a new verification link (earlier links stop working)",
)
async def resend_verification(request: Request, claims: CurrentUser, ctx: Ctx) -> JSONResponse:
    async with audited(
        "email.verify_resend", request, user_id=claims.sub, session_id=claims.sid, problem=_problem
    ):
        await ctx.email.resend(user_id=claims.sub, ip=ip_of(request))
    return JSONResponse(_RESENT.model_dump(), status_code=202, headers=_NO_STORE)


@router.post(
    "/email/change",
    status_code=202,
    response_model=Accepted,
    responses=problem_responses(401, 409, 422, 429, 503),
    summary="Ask to move the account to a new address (it moves when the mailed link is used)",
)
async def change_email(
    body: EmailChangeRequest, request: Request, claims: CurrentUser, ctx: Ctx
) -> JSONResponse:
    assert claims.sid is not None  # current_user admits user tokens only
    async with audited(
        "email.change", request, user_id=claims.sub, session_id=claims.sid, problem=_problem
    ):
        await ctx.email.request_change(
            user_id=claims.sub,
            sid=claims.sid,
            new_email=str(body.new_email),
            password=body.password.get_secret_value(),
            ip=ip_of(request),
        )
    return JSONResponse(_CHANGE_SENT.model_dump(), status_code=202, headers=_NO_STORE)
