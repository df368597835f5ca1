"""POST /users: self-registration."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth_service.api.auditing import audited, validation_audited_route
from auth_service.api.deps import Ctx, ip_of
from auth_service.schemas.accounts import Profile, RegistrationRequest
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
    async with audited("user.register", request) as audit:
        profile = await ctx.registration.register(body, ip=ip_of(request))
        out = Profile.model_validate(profile)
        audit.success(user_id=str(out.id))
    response.headers["Location"] = f"/users/{out.id}"
    return out
