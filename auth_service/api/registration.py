"""POST /users: self-registration."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth_service.api.auditing import audited_failure, validation_audited_route
from auth_service.api.deps import Ctx, ip_of, to_problem
from auth_service.schemas.accounts import Profile, RegistrationRequest
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses

# A body that fails validation is audited as a failed registration too.
router = APIRouter(tags=["accounts"], route_class=validation_audited_route("user.register"))


@router.post(
    "/users",
    status_code=201,
    response_model=Profile,
    responses=problem_responses(409, 422, 429, 503),
    summary="Register a new account",
)
async def register(
    body: RegistrationRequest, request: Request, response: Response, ctx: Ctx
) -> Profile:
    try:
        profile = await ctx.registration.register(body, ip=ip_of(request))
    except Exception as exc:
        raise to_problem(audited_failure("user.register", exc, request)) from None
    out = Profile.model_validate(profile)
    audit_event("user.register", outcome="success", request=request, user_id=str(out.id))
    response.headers["Location"] = f"/users/{out.id}"
    return out
