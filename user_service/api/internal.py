"""/internal/...: service-to-service, never routed by the gateway.

Each route takes a service token carrying its own scope, so the auth
service's token for one purpose (creating profiles) cannot do another
(deleting or reading them).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from shared.audit.api import AuditEventOut
from shared.audit.store import AuditStore
from shared.http.openapi import problem_responses
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims
from user_service.api.deps import Ctx, require_service
from user_service.schemas import ProfileEmailUpdate, ProfileExport, ProfileOut, ProfileUpsert

router = APIRouter(tags=["internal"])

ProfilesWriter = Annotated[AccessClaims, Depends(require_service("profiles:write"))]
ProfilesReader = Annotated[AccessClaims, Depends(require_service("profiles:read"))]
ProfilesDeleter = Annotated[AccessClaims, Depends(require_service("profiles:delete"))]


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


@router.delete(
    "/internal/profiles/{user_id}",
    status_code=204,
    responses=problem_responses(401, 403, 422, 503),
    summary="Erase a profile (account deletion); 204 whether or not it existed",
)
async def delete_profile(user_id: uuid.UUID, _: ProfilesDeleter, ctx: Ctx) -> Response:
    # Idempotent on purpose: the auth service retries a deletion whose answer
    # it did not get, and "already gone" is the state it asked for.
    await ctx.profiles.delete(user_id)
    return Response(status_code=204)


@router.get(
    "/internal/exports/{user_id}",
    response_model=ProfileExport,
    responses=problem_responses(401, 403, 422, 503),
    summary="Everything this service holds about a user: profile and audit events",
)
async def export_user(user_id: uuid.UUID, _: ProfilesReader, ctx: Ctx) -> ProfileExport:
    profile = await ctx.profiles.get(user_id)
    rows, truncated = await AuditStore(ctx.engine).about(str(user_id))
    out = None if profile is None else ProfileOut.model_validate(profile, from_attributes=True)
    return ProfileExport(
        profile=out,
        audit_events=[AuditEventOut.model_validate(r) for r in rows],
        audit_events_truncated=truncated,
    )


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
    profile = await ctx.profiles.update(profile_id, body.model_dump(exclude_none=True))
    if profile is None:
        raise Problem(404, detail="No such profile.", slug="user-not-found")
    return ProfileOut.model_validate(profile, from_attributes=True)
