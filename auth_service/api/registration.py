"""POST /users: self-registration."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth_service.api.deps import Ctx, ip_of, to_problem
from auth_service.schemas import Profile, RegistrationRequest
from shared.openapi import problem_responses

router = APIRouter(tags=["accounts"])


@router.post(
    "/users",
    status_code=201,
    response_model=Profile,
    responses=problem_responses(409, 422, 429, 503),
    summary="Register a new account",
)
async def register(body: RegistrationRequest, request: Request, response: Response, ctx: Ctx) -> Profile:
    try:
        profile = await ctx.registration.register(body, ip=ip_of(request))
    except Exception as exc:
        raise to_problem(exc) from None
    out = Profile.model_validate(profile)
    response.headers["Location"] = f"/users/{out.id}"
    return out
