"""DELETE /users/me and GET /users/me/export: the account's end, and its data.

Both are the auth service's (the gateway routes these two explicitly; every
other `/users/...` request goes to the user service): it owns the identity and
the secrets, and it reaches the user service's internal routes for the profile.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from auth_service.api.auditing import audited_failure
from auth_service.api.deps import Ctx, CurrentUser, ip_of, to_problem
from auth_service.errors import InvalidCredentials
from auth_service.schemas.account_data import (
    AccountDeleteRequest,
    AccountExportOut,
    AuditTrailExport,
    IdentityExport,
    RecoveryCodesExport,
)
from auth_service.schemas.accounts import SessionOut
from auth_service.schemas.webauthn import CredentialOut
from shared.audit.api import AuditEventOut
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses
from shared.http.problems import Problem

router = APIRouter(tags=["account"])

_NO_STORE = {"Cache-Control": "no-store"}


def _delete_problem(exc: Exception) -> Problem:
    if isinstance(exc, InvalidCredentials):
        # The token is fine (no WWW-Authenticate); the password is not.
        return Problem(
            401, "Unauthorized", "The password is not correct.", slug="invalid-credentials"
        )
    return to_problem(exc)


@router.delete(
    "/users/me",
    status_code=204,
    responses=problem_responses(401, 422, 429, 503),
    summary="Delete your account and everything it holds, in both services",
)
async def delete_account(
    body: AccountDeleteRequest, request: Request, claims: CurrentUser, ctx: Ctx
) -> Response:
    who = {"user_id": claims.sub, "session_id": claims.sid}
    try:
        deleted = await ctx.deletion.delete(
            user_id=claims.sub, password=body.password.get_secret_value(), ip=ip_of(request)
        )
    except Exception as exc:
        raise _delete_problem(audited_failure("account.delete", exc, request, **who)) from None
    # The event names the account by its id only, like every event before it.
    audit_event(
        "account.delete",
        outcome="success",
        request=request,
        rows_deleted=sum(deleted.rows.values()),
        sessions_revoked=deleted.sessions_revoked,
        **who,
    )
    return Response(status_code=204, headers=_NO_STORE)


def _ts(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


@router.get(
    "/users/me/export",
    response_model=AccountExportOut,
    responses=problem_responses(401, 404, 503),
    summary="Everything the platform holds about you, as JSON",
)
async def export_account(request: Request, claims: CurrentUser, ctx: Ctx) -> Response:
    who = {"user_id": claims.sub, "session_id": claims.sid}
    try:
        data = await ctx.export.export(claims.sub)
    except InvalidCredentials:
        audited_failure("account.export", InvalidCredentials(), request, **who)
        raise Problem(404, detail="No such account.", slug="account-not-found") from None
    except Exception as exc:
        raise to_problem(audited_failure("account.export", exc, request, **who)) from None
    identity = data.identity
    theirs = data.user_service
    out = AccountExportOut(
        exported_at=datetime.now(UTC),
        identity=IdentityExport(
            id=identity.id,
            email=identity.email,
            roles=list(identity.role_list),
            created_at=identity.created_at,
            updated_at=identity.updated_at,
        ),
        profile=theirs.get("profile"),
        sessions=[
            SessionOut(
                sid=s.sid,
                current=s.sid == claims.sid,
                created_at=_ts(s.created_at_ms),
                last_used_at=_ts(s.last_used_at_ms),
                ip=s.ip,
                user_agent=s.user_agent,
                amr=list(s.amr),
            )
            for s in data.sessions
        ],
        passkeys=[CredentialOut.of(p) for p in data.passkeys],
        recovery_codes=RecoveryCodesExport(remaining=data.recovery_codes_remaining),
        audit_events=AuditTrailExport(
            auth_service=[AuditEventOut.model_validate(r) for r in data.audit_events],
            user_service=[AuditEventOut.model_validate(r) for r in theirs["audit_events"]],
            truncated=data.audit_events_truncated or bool(theirs["audit_events_truncated"]),
        ),
    )
    audit_event("account.export", outcome="success", request=request, **who)
    return Response(
        out.model_dump_json(),
        media_type="application/json",
        headers={
            **_NO_STORE,
            "Content-Disposition": 'attachment; filename="account-export.json"',
        },
    )
