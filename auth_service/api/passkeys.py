"""/webauthn/*: passkey enrolment, listing, removal, passwordless login, recovery codes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from auth_service.api.auditing import audited
from auth_service.api.deps import Ctx, CurrentUser, ip_of, user_agent_of
from auth_service.api.oauth_forms import NO_STORE, token_response
from auth_service.api.problems import ProblemOptions, to_problem
from auth_service.api.second_factor import RecentMfaUser, gated_enrolment
from auth_service.errors import (
    CeremonyFailed,
    EmailNotVerified,
)
from auth_service.schemas.accounts import TokenResponse
from auth_service.schemas.webauthn import (
    CredentialOut,
    EnrolmentOut,
    LoginVerifyRequest,
    RecoveryCodesOut,
    RegisterOptionsRequest,
    RegisterVerifyRequest,
)
from auth_service.services.second_factor.second_step import recent_login
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses

router = APIRouter(prefix="/webauthn", tags=["passkeys"])

# A failed login ceremony is a failed login: 401 (enrolment's is a bad request).
_LOGIN = ProblemOptions(ceremony_status=401)

_OPTIONS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Options JSON exactly as py_webauthn's options_to_json writes it",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _options(options_json: str) -> Response:
    # Passed through verbatim: the body *is* options_to_json's output.
    return Response(options_json, media_type="application/json")


@router.post(
    "/register/options",
    responses={**_OPTIONS_DOC, **problem_responses(401, 403, 409, 422, 429, 503)},
    summary="Start enrolling a passkey (PublicKeyCredentialCreationOptions)",
)
async def register_options(
    request: Request,
    claims: CurrentUser,
    ctx: Ctx,
    body: RegisterOptionsRequest | None = None,
) -> Response:
    """The first passkey needs a recent login or `{"password": ...}`; later ones a
    recent second factor (docs/PASSKEYS.md)."""
    start = await gated_enrolment(
        request,
        claims,
        ctx,
        body.password if body else None,
        ctx.passkeys.registration_options,
        purpose="passkey.enrol",
    )
    return _options(start.options_json)


@router.post(
    "/register/verify",
    status_code=201,
    response_model=EnrolmentOut,
    responses=problem_responses(400, 401, 409, 422, 503),
    summary="Finish enrolling a passkey",
)
async def register_verify(
    body: RegisterVerifyRequest, request: Request, claims: CurrentUser, ctx: Ctx
) -> EnrolmentOut:
    who = {"user_id": claims.sub, "session_id": claims.sid}
    async with audited(
        "passkey.added", request, user_id=claims.sub, session_id=claims.sid
    ) as audit:
        enrolment = await ctx.passkeys.register(
            user_id=claims.sub, credential=body.credential, label=body.label, sid=claims.sid
        )
        # The first passkey turns MFA on: its recovery codes come with it,
        # shown once, so that losing the device never locks the user out.
        codes = await ctx.mfa.new_recovery_codes(claims.sub) if enrolment.first else None
        row = enrolment.credential
        audit.success(webauthn_id=str(row.id), aaguid=row.aaguid, first=enrolment.first)
    if enrolment.first:
        # MFA is on from now, and whoever holds this passkey and the codes
        # decides who logs in: its own event, naming the session and whether
        # a recent login or the password again allowed it.
        audit_event(
            "mfa.enabled",
            outcome="success",
            request=request,
            **who,
            webauthn_id=str(row.id),
            recent_login=recent_login(claims, max_age=ctx.settings.enrol_reauth_max_age_seconds),
            auth_time=claims.auth_time,
        )
    if codes is not None:
        audit_event(
            "recovery_codes.generated", outcome="success", request=request, **who, count=len(codes)
        )
    return EnrolmentOut(credential=CredentialOut.of(row), recovery_codes=codes)


@router.get(
    "/credentials",
    response_model=list[CredentialOut],
    responses=problem_responses(401, 503),
    summary="List my passkeys",
)
async def list_credentials(claims: CurrentUser, ctx: Ctx) -> list[CredentialOut]:
    try:
        rows = await ctx.passkeys.list(claims.sub)
    except Exception as exc:
        raise to_problem(exc) from None
    return [CredentialOut.of(r) for r in rows]


@router.delete(
    "/credentials/{credential_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409, 503),
    summary="Remove one of my passkeys (needs a recent second factor)",
)
async def delete_credential(
    credential_id: Annotated[uuid.UUID, Path()],
    request: Request,
    claims: RecentMfaUser,
    ctx: Ctx,
    confirm_last: Annotated[bool, Query(description="required to remove the last passkey")] = False,
) -> Response:
    # A refusal here is the caller's (not their passkey, the last one).
    async with audited(
        "passkey.removed",
        request,
        user_id=claims.sub,
        session_id=claims.sid,
        denied=True,
        webauthn_id=str(credential_id),
    ) as audit:
        was_last = await ctx.passkeys.remove(
            user_id=claims.sub, row_id=credential_id, confirm_last=confirm_last
        )
        audit.success(mfa_disabled=was_last)
    if was_last:
        # The account's last second factor went: password-only from now.
        audit_event(
            "mfa.disabled",
            outcome="success",
            request=request,
            user_id=claims.sub,
            session_id=claims.sid,
            method="passkey",
        )
    return Response(status_code=204)


@router.post(
    "/recovery-codes",
    status_code=201,
    response_model=RecoveryCodesOut,
    responses=problem_responses(401, 403, 409, 503),
    summary="Replace my recovery codes (shown once; needs a recent second factor)",
)
async def new_recovery_codes(request: Request, claims: RecentMfaUser, ctx: Ctx) -> RecoveryCodesOut:
    async with audited(
        "recovery_codes.generated",
        request,
        user_id=claims.sub,
        session_id=claims.sid,
        audits=(),  # a failure changed nothing: only its problem
    ) as audit:
        codes = await ctx.mfa.new_recovery_codes(claims.sub)
        audit.success(count=len(codes))
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/login/options",
    responses={**_OPTIONS_DOC, **problem_responses(429, 503)},
    summary="Start a passwordless login (PublicKeyCredentialRequestOptions)",
)
async def login_options(request: Request, ctx: Ctx) -> Response:
    try:
        options = await ctx.passkeys.login_options(ip=ip_of(request))
    except Exception as exc:
        raise to_problem(exc, _LOGIN) from None
    return _options(options)


@router.post(
    "/login/verify",
    response_model=TokenResponse,
    responses=problem_responses(401, 403, 422, 503),
    summary="Finish a passwordless login with a discoverable passkey",
)
async def login_verify(
    body: LoginVerifyRequest, request: Request, response: Response, ctx: Ctx
) -> TokenResponse:
    response.headers.update(NO_STORE)
    async with audited(
        "passkey.login", request, audits=(CeremonyFailed, EmailNotVerified), problem=_LOGIN
    ) as audit:
        grant = await ctx.passkeys.login(
            credential=body.credential, ip=ip_of(request), user_agent=user_agent_of(request)
        )
        audit.success(user_id=grant.user_id, session_id=grant.sid, method="passkey")
    return token_response(grant)
