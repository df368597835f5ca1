"""POST /login/mfa: the second step of a password login."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth_service.api.auditing import audited
from auth_service.api.deps import Ctx, ip_of, user_agent_of
from auth_service.api.oauth_forms import NO_STORE, token_response
from auth_service.api.problems import ProblemOptions, to_problem
from auth_service.context import AuthContext
from auth_service.errors import CeremonyFailed, EmailNotVerified
from auth_service.schemas.accounts import TokenResponse
from auth_service.schemas.webauthn import MfaRequest, MfaRequiredResponse
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses

router = APIRouter(tags=["tokens"])

# A failed second step is a failed login: 401.
_LOGIN = ProblemOptions(ceremony_status=401)


async def begin_mfa(request: Request, ctx: AuthContext, user_id: str) -> MfaRequiredResponse:
    """The `POST /login` answer for a right password on an account with a passkey.

    No tokens: only the opaque mfa_token and the request options that
    `POST /login/mfa` needs.
    """
    try:
        pending = await ctx.mfa.begin(user_id)
    except Exception as exc:
        raise to_problem(exc, _LOGIN) from None
    audit_event("mfa.challenge", outcome="success", request=request, user_id=user_id)
    return MfaRequiredResponse(
        mfa_token=pending.mfa_token, expires_in=pending.expires_in, webauthn=pending.webauthn
    )


@router.post(
    "/login/mfa",
    response_model=TokenResponse,
    responses=problem_responses(401, 403, 422, 503),
    summary="Complete a login with a passkey assertion or a recovery code",
)
async def login_mfa(
    body: MfaRequest, request: Request, response: Response, ctx: Ctx
) -> TokenResponse:
    response.headers.update(NO_STORE)
    method = "passkey" if body.credential is not None else "recovery_code"
    ip, ua = ip_of(request), user_agent_of(request)
    async with audited(
        "mfa.verify",
        request,
        audits=(CeremonyFailed, EmailNotVerified),
        problem=_LOGIN,
        method=method,
    ) as audit:
        if body.credential is not None:
            grant = await ctx.mfa.complete_with_passkey(
                mfa_token=body.mfa_token, credential=body.credential, ip=ip, user_agent=ua
            )
        else:
            assert body.recovery_code is not None  # the schema demands exactly one
            grant = await ctx.mfa.complete_with_recovery_code(
                mfa_token=body.mfa_token, code=body.recovery_code, ip=ip, user_agent=ua
            )
        audit.success(user_id=grant.user_id, session_id=grant.sid)
    if body.recovery_code is not None:
        remaining = await ctx.mfa.remaining_codes(grant.user_id)
        audit_event(
            "recovery_code.used",
            outcome="success",
            request=request,
            user_id=grant.user_id,
            session_id=grant.sid,
            remaining=remaining,
        )
    return token_response(grant)
