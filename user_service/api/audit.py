"""GET /audit/events: the user service's audit table, for admins only.

Token rejections (401) and access denials (403) at the user service are
stored here; the auth service serves its own table at the same path.
"""

from __future__ import annotations

from fastapi import Request

from shared.audit.api import audit_router
from shared.audit.store import AuditStore
from shared.tokens.claims import AccessClaims
from user_service.api.deps import CurrentUser, forbidden, get_ctx, is_admin


async def require_admin(request: Request, claims: CurrentUser) -> AccessClaims:
    """A user token with the `admin` role (a 403, audited, for anyone else)."""
    if not is_admin(claims):
        raise forbidden(request, "not_admin", "Reading audit events needs the admin role.")
    return claims


router = audit_router(require_admin, lambda request: AuditStore(get_ctx(request).engine))
