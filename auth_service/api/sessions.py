"""GET /sessions, DELETE /sessions/{sid}: a user's own sessions."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from auth_service.api.auditing import audited_failure
from auth_service.api.deps import Ctx, CurrentUser
from auth_service.api.problems import to_problem
from auth_service.schemas.accounts import SessionOut
from auth_service.schemas.webauthn import PasskeyAdded
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses
from shared.http.problems import Problem

router = APIRouter(tags=["sessions"])

Sid = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _ts(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


@router.get("/sessions", response_model=list[SessionOut], responses=problem_responses(401, 503))
async def list_sessions(claims: CurrentUser, ctx: Ctx) -> list[SessionOut]:
    try:
        sessions = await ctx.sessions.list(claims.sub)
        passkeys = await ctx.passkeys.list(claims.sub)
    except Exception as exc:
        raise to_problem(exc) from None
    # Which session enrolled which passkey: one that added a passkey its
    # owner does not know is the session to end (docs/PASSKEYS.md).
    added: dict[str, list[PasskeyAdded]] = defaultdict(list)
    for p in passkeys:
        if p.enrolled_sid:
            added[p.enrolled_sid].append(
                PasskeyAdded(id=p.id, label=p.label, created_at=p.created_at)
            )
    return [
        SessionOut(
            sid=s.sid,
            current=s.sid == claims.sid,
            created_at=_ts(s.created_at_ms),
            last_used_at=_ts(s.last_used_at_ms),
            ip=s.ip,
            user_agent=s.user_agent,
            amr=list(s.amr),
            passkeys_added=added.get(s.sid, []),
        )
        for s in sessions
    ]


@router.delete("/sessions/{sid}", status_code=204, responses=problem_responses(401, 404, 503))
async def revoke_session(sid: Sid, request: Request, claims: CurrentUser, ctx: Ctx) -> Response:
    # session_id: the session revoked; by_session: the one that asked.
    who = {"user_id": claims.sub, "session_id": sid, "by_session": claims.sid}
    try:
        revoked = await ctx.sessions.revoke(sid, owner=claims.sub)
    except Exception as exc:
        raise to_problem(audited_failure("session.revoked", exc, request, **who)) from None
    if not revoked:
        audit_event(
            "session.revoked", outcome="failure", request=request, reason="not_found", **who
        )
        # Someone else's session and a session that does not exist look alike:
        # session ids of other users are not discoverable here.
        raise Problem(404, detail="No such session.", slug="session-not-found")
    audit_event("session.revoked", outcome="success", request=request, **who)
    return Response(status_code=204)
