"""Audit events for refused bearer tokens (401) and refused access (403).

Called by the services' dependencies, where the request is known. The
precise reason goes to the trail and the metrics; the client's answer stays
as generic as `shared.access.bearer.unauthorized` makes it.
"""

from __future__ import annotations

from starlette.requests import Request

from shared.access.bearer import BearerAuthenticator
from shared.audit.events import audit_event
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims

__all__ = ["audit_access_denied", "audit_token_rejected", "authenticate"]


async def authenticate(bearer: BearerAuthenticator, request: Request) -> AccessClaims:
    """Verify the request's bearer token; a 401 is audited as `token.rejected`.

    Raises:
        Problem: 401 (audited) or 503 (a dependency is down; not audited).
    """
    try:
        return await bearer(request)
    except Problem as exc:
        if exc.status == 401:
            audit_token_rejected(request)
        raise


def audit_token_rejected(request: Request, reason: str | None = None) -> None:
    """`token.rejected`, reason from the bearer (`request.state.token_rejection`)."""
    reason = reason or getattr(request.state, "token_rejection", None) or "unspecified"
    audit_event("token.rejected", outcome="failure", request=request, reason=reason)


def audit_access_denied(request: Request, reason: str) -> None:
    """`access.denied` for the authenticated principal of the request."""
    principal = getattr(request.state, "principal", None)
    claims = principal if isinstance(principal, AccessClaims) else None
    audit_event(
        "access.denied",
        outcome="denied",
        request=request,
        user_id=None if claims is None or claims.is_service else claims.sub,
        session_id=None if claims is None else claims.sid,
        reason=reason,
        client_id=None if claims is None else claims.client_id,
        path=request.url.path,
    )
