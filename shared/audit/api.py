"""GET /audit/events: the audit table of one service, for admins only.

Each service serves its own table (the events it saw) at the same path with
the same parameters; see docs/SECURITY_TEAM.md. The router is built per
service because "who is an admin" is a dependency of that service.
"""

# No `from __future__ import annotations`: the endpoint's parameters use a
# dependency built inside `audit_router`, which FastAPI could not resolve
# from a string annotation (it looks names up in module globals).
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator

from shared.audit.events import audit_event
from shared.audit.store import AuditQuery, AuditStore
from shared.http.openapi import problem_responses
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims

__all__ = ["AuditEventOut", "AuditPage", "audit_router"]


def _iso_only(value: object) -> object:
    # pydantic would read "0.5" or "1700000000" as Unix timestamps; the
    # parameter is documented as an ISO 8601 date-time (found by schemathesis).
    if isinstance(value, str) and not _ISO_DATE_PREFIX.match(value):
        raise ValueError("must be an ISO 8601 date-time")
    return value


def _in_utc(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+01:00 is a valid ISO date-time whose UTC instant is
    # before year 1: astimezone() raised OverflowError later, in the store
    # (a 500, found by tests/abuse probing). Refused here as a 422 instead.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a date-time between years 1 and 9999 in UTC") from None


_ISO_DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_Instant = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_in_utc)]


class AuditEventOut(BaseModel):
    id: int
    time: datetime
    event: str
    outcome: str
    service: str
    user_id: str | None
    session_id: str | None
    reason: str | None
    client_ip: str | None
    user_agent: str | None
    request_id: str | None
    trace_id: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    # Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: str | None


_Id = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


def audit_router(admin: Callable[..., Any], store: Callable[[Request], AuditStore]) -> APIRouter:
    """The router of `GET /audit/events`.

    Args:
        admin: a dependency returning the caller's claims, refusing non-admins.
        store: the service's audit store for a request.
    """
    router = APIRouter(tags=["audit"])
    Admin = Annotated[AccessClaims, Depends(admin)]

    @router.get(
        "/audit/events",
        response_model=AuditPage,
        responses=problem_responses(401, 403, 422, 503),
        summary="Audit events of this service, newest first (admins only)",
    )
    async def list_events(
        request: Request,
        claims: Admin,
        event: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_.]+$")] = None,
        outcome: Literal["success", "failure", "denied"] | None = None,
        user_id: _Id = None,
        session_id: _Id = None,
        since: _Instant | None = None,
        until: _Instant | None = None,
        # 18 digits: every value fits a signed 64-bit id. 19 let
        # 9999999999999999999 through to SQLite (OverflowError, a 500).
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> AuditPage:
        if since is not None and until is not None and since >= until:
            raise Problem(
                422, "Invalid request", "`since` must be before `until`.", slug="validation"
            )
        query = AuditQuery(
            event=event,
            outcome=outcome,
            user_id=user_id,
            session_id=session_id,
            since=since,
            until=until,
            before_id=int(cursor) if cursor else None,
            limit=limit,
        )
        rows, next_id = await store(request).page(query)
        # Reading the trail is itself on the trail: who looked, for what.
        audit_event(
            "audit.read",
            outcome="success",
            request=request,
            user_id=claims.sub,
            session_id=claims.sid,
            filter_event=event,
            filter_user_id=user_id,
            results=len(rows),
        )
        return AuditPage(
            items=[AuditEventOut.model_validate(r) for r in rows],
            next_cursor=None if next_id is None else str(next_id),
        )

    return router
