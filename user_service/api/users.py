"""GET /users/me, GET /users/{id} (self or admin), GET /users (admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from shared.openapi import problem_responses
from shared.problems import Problem
from user_service.api.deps import Ctx, CurrentUser, forbidden, is_admin
from user_service.schemas import ProfileOut, ProfilePage

router = APIRouter(tags=["users"])

_AUTH_ERRORS = problem_responses(401, 403, 503)


def _not_found() -> Problem:
    return Problem(404, detail="No such user.", slug="user-not-found")


@router.get("/users/me", response_model=ProfileOut, responses=problem_responses(401, 403, 404, 503))
async def me(claims: CurrentUser, ctx: Ctx) -> ProfileOut:
    profile = await ctx.profiles.get(uuid.UUID(claims.sub))
    if profile is None:
        raise _not_found()
    return ProfileOut.model_validate(profile, from_attributes=True)


@router.get(
    "/users/{user_id}",
    response_model=ProfileOut,
    responses=problem_responses(401, 403, 404, 503),
)
async def get_user(
    user_id: Annotated[str, Path(max_length=64)], claims: CurrentUser, ctx: Ctx, request: Request
) -> ProfileOut:
    admin = is_admin(claims)
    # Authorise before looking anything up: a non-admin gets 403 for every id
    # but their own, so the answer never tells whether another user exists.
    if user_id != claims.sub and not admin:
        raise forbidden(request, "not_owner", "You may read only your own profile.")
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        raise _not_found() from None
    profile = await ctx.profiles.get(uid)
    if profile is None:
        raise _not_found()
    return ProfileOut.model_validate(profile, from_attributes=True)


@router.get("/users", response_model=ProfilePage, responses=_AUTH_ERRORS)
async def list_users(
    claims: CurrentUser,
    ctx: Ctx,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ProfilePage:
    if not is_admin(claims):
        raise forbidden(request, "not_admin", "Listing users needs the admin role.")
    rows, total = await ctx.profiles.page(limit=limit, offset=offset)
    return ProfilePage(
        items=[ProfileOut.model_validate(p, from_attributes=True) for p in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
