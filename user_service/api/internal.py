"""/internal/profiles: service-to-service, never routed by the gateway."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from shared.http.openapi import problem_responses
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims
from user_service.api.deps import Ctx, require_service
from user_service.schemas import ProfileEmailUpdate, ProfileOut, ProfileUpsert

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


@router.patch(
    "/internal/profiles/{profile_id}/email",
    response_model=ProfileOut,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def update_profile_email(
    profile_id: uuid.UUID, body: ProfileEmailUpdate, _: ProfilesWriter, ctx: Ctx
) -> ProfileOut:
    """The auth service's email facts (verified, or a completed change).

    Narrower than the upsert: the auth service does not hold the rest of the
    profile, and must not overwrite what the owner edited here.
    """
    profile = await ctx.profiles.update_email(profile_id, body)
    if profile is None:
        raise Problem(404, detail="No such profile.", slug="user-not-found")
    return ProfileOut.model_validate(profile, from_attributes=True)
