"""POST /internal/profiles: service-to-service, never routed by the gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from shared.http.openapi import problem_responses
from shared.tokens.claims import AccessClaims
from user_service.api.deps import Ctx, require_service
from user_service.schemas import ProfileOut, ProfileUpsert

router = APIRouter(tags=["internal"])

ProfilesWriter = Annotated[AccessClaims, Depends(require_service("profiles:write"))]


@router.post(
    "/internal/profiles",
    response_model=ProfileOut,
    status_code=201,
    responses={200: {"description": "Updated"}, **problem_responses(401, 403, 422, 503)},
)
async def upsert_profile(
    body: ProfileUpsert, _: ProfilesWriter, ctx: Ctx, response: Response
) -> ProfileOut:
    profile, created = await ctx.profiles.upsert(body)
    response.status_code = 201 if created else 200
    return ProfileOut.model_validate(profile, from_attributes=True)
