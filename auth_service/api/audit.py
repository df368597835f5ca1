"""GET /audit/events: the auth service's audit table, for admins only.

The user service serves its own table at the same path (token rejections
and access denials happen there); see docs/SECURITY_TEAM.md.
"""

from __future__ import annotations

from fastapi import Request

from auth_service.api.deps import CurrentUser, get_ctx
from shared.audit.access import audit_access_denied
from shared.audit.api import audit_router
from shared.audit.store import AuditStore
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims


async def require_admin(request: Request, claims: CurrentUser) -> AccessClaims:
    """A user token with the `admin` role (a 403, audited, for anyone else)."""
    if "admin" not in claims.roles:
        audit_access_denied(request, "not_admin")
        raise Problem(
            403,
            "Forbidden",
            "Reading audit events needs the admin role.",
            slug="forbidden",
            headers={"WWW-Authenticate": 'Bearer realm="auth-service", error="insufficient_scope"'},
        )
    return claims


router = audit_router(require_admin, lambda request: AuditStore(get_ctx(request).engine))
