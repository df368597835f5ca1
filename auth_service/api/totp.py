"""/totp: enrol, confirm and remove TOTP (RFC 6238) as a second factor."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth_service.api.auditing import audited
from auth_service.api.deps import Ctx, CurrentUser
from auth_service.api.oauth_forms import NO_STORE
from auth_service.api.problems import to_problem
from auth_service.api.second_factor import RecentMfaUser, gated_enrolment
from auth_service.schemas.totp import (
    TotpConfirmOut,
    TotpConfirmRequest,
    TotpEnrolOut,
    TotpEnrolRequest,
    TotpStatusOut,
)
from auth_service.services.second_factor.second_step import recent_login
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses

router = APIRouter(prefix="/totp", tags=["totp"])


def _qr_svg(uri: str) -> str:
    # Imported on the first enrolment, not at start: QR rendering is ~1.7 MB of
    # every auth process's memory for a route an account uses once (bench/README.md, P7).
    import segno

    # Error correction M, the usual for otpauth URIs; a quiet zone of 4 modules.
    return str(segno.make(uri, error="m").svg_data_uri(scale=4, border=4))


@router.get(
    "",
    response_model=TotpStatusOut,
    responses=problem_responses(401, 503),
    summary="Whether TOTP is on for my account",
)
async def status(claims: CurrentUser, ctx: Ctx) -> TotpStatusOut:
    try:
        enabled, pending = await ctx.totp.status(claims.sub)
    except Exception as exc:
        raise to_problem(exc) from None
    return TotpStatusOut(enabled=enabled, pending=pending)


@router.post(
    "/enrol",
    response_model=TotpEnrolOut,
    responses=problem_responses(401, 403, 409, 422, 429, 503),
    summary="Start enrolling TOTP: a new secret, active once confirmed",
)
async def enrol(
    request: Request,
    response: Response,
    claims: CurrentUser,
    ctx: Ctx,
    body: TotpEnrolRequest | None = None,
) -> TotpEnrolOut:
    """As the account's first second factor: a recent login or `{"password": ...}`;
    beside a passkey: a recent second factor (docs/PASSKEYS.md, "TOTP")."""
    response.headers.update(NO_STORE)  # the answer holds the secret
    who = {"user_id": claims.sub, "session_id": claims.sid}
    start = await gated_enrolment(
        request,
        claims,
        ctx,
        body.password if body else None,
        ctx.totp.enrol,
        purpose="totp.enrol",
        failure_event="totp.enrol",
    )
    audit_event("totp.enrol", outcome="success", request=request, **who)
    return TotpEnrolOut(
        secret=start.secret, otpauth_uri=start.otpauth_uri, qr_svg=_qr_svg(start.otpauth_uri)
    )


@router.post(
    "/confirm",
    status_code=201,
    response_model=TotpConfirmOut,
    responses=problem_responses(400, 401, 409, 422, 503),
    summary="Confirm TOTP with a code from the app: it is a second factor from now",
)
async def confirm(
    body: TotpConfirmRequest, request: Request, response: Response, claims: CurrentUser, ctx: Ctx
) -> TotpConfirmOut:
    response.headers.update(NO_STORE)  # may hold the recovery codes
    who = {"user_id": claims.sub, "session_id": claims.sid}
    async with audited("totp.added", request, user_id=claims.sub, session_id=claims.sid) as audit:
        first = await ctx.totp.confirm(user_id=claims.sub, code=body.code)
        # The first second factor turns MFA on: its recovery codes come with
        # it, shown once, as with the first passkey.
        codes = await ctx.mfa.new_recovery_codes(claims.sub) if first else None
        audit.success(first=first)
    if first:
        audit_event(
            "mfa.enabled",
            outcome="success",
            request=request,
            **who,
            method="totp",
            recent_login=recent_login(claims, max_age=ctx.settings.enrol_reauth_max_age_seconds),
            auth_time=claims.auth_time,
        )
    if codes is not None:
        audit_event(
            "recovery_codes.generated", outcome="success", request=request, **who, count=len(codes)
        )
    return TotpConfirmOut(recovery_codes=codes)


@router.delete(
    "",
    status_code=204,
    responses=problem_responses(401, 403, 404, 503),
    summary="Remove TOTP (needs a recent second factor)",
)
async def remove(request: Request, claims: RecentMfaUser, ctx: Ctx) -> Response:
    # The step-up (RecentMfaUser) is the same as for removing a passkey: a
    # stolen session must not be able to turn a second factor off.
    who = {"user_id": claims.sub, "session_id": claims.sid}
    async with audited(
        "totp.removed", request, user_id=claims.sub, session_id=claims.sid, denied=True
    ) as audit:
        mfa_off = await ctx.totp.remove(claims.sub)
        audit.success(mfa_disabled=mfa_off)
    if mfa_off:
        audit_event("mfa.disabled", outcome="success", request=request, **who, method="totp")
    return Response(status_code=204)
