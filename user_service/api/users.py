"""GET and PATCH /users/me, GET /users/{id} (self or admin), GET /users (admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from shared.audit.events import audit_event
from shared.http.openapi import problem_responses
from shared.http.problems import Problem
from shared.http.routes import FastPathRoute
from shared.tokens.claims import AccessClaims
from user_service.api.deps import Ctx, CurrentUser, current_user, forbidden, get_ctx, is_admin
from user_service.context import UserContext
from user_service.models import Profile
from user_service.schemas import ProfileOut, ProfilePage, ProfileUpdate

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


@router.patch(
    "/users/me",
    response_model=ProfileOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Change your name, date of birth or job title",
)
async def update_me(
    body: ProfileUpdate, claims: CurrentUser, ctx: Ctx, request: Request
) -> ProfileOut:
    # The profile here is the one copy of name, date of birth and job title:
    # the auth service keeps none (it reads them only from the registration
    # request, for the password policy), so nothing else can go stale.
    changes = body.changes()
    who = {"user_id": claims.sub, "session_id": claims.sid}
    profile = await ctx.profiles.update(uuid.UUID(claims.sub), changes)
    if profile is None:
        audit_event("profile.update", outcome="failure", request=request, reason="not_found", **who)
        raise _not_found()
    # Which fields changed, never their values: the trail outlives the
    # profile (an erased account's events keep only its id).
    audit_event(
        "profile.update", outcome="success", request=request, fields=",".join(changes), **who
    )
    return ProfileOut.model_validate(profile, from_attributes=True)


_USER_ID_MAX = 64


def _json(profile: Profile | ProfileOut) -> Response:
    """The profile as JSON, validated and encoded once.

    `ProfileOut` is the response model (declared on the routes for the
    OpenAPI schema): building it keeps the output to exactly its fields, as
    FastAPI's response-model filtering did, and `model_dump_json` writes the
    same bytes FastAPI's serializer wrote, without validating a second time.
    """
    out = ProfileOut.model_validate(profile, from_attributes=True)
    return Response(out.model_dump_json(), media_type="application/json")


async def _read_profile(
    request: Request, claims: AccessClaims, ctx: UserContext, user_id: str
) -> Response:
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
    return _json(profile)


class _ProfileReadRoute(FastPathRoute):
    """`GET /users/{user_id}` without FastAPI's per-request dependency solving.

    The hot read of the service (bench/README.md, target 1): solving the
    declared parameters and dependencies cost more than the token check and
    the read together. The fast path does exactly what they declare, in the
    same order: the bearer check (`current_user`: 401/403, audited) first,
    then the path parameter. A `user_id` that fails the declared
    `max_length` goes to FastAPI's own handler (`FastPathRoute`).
    """

    async def fast(self, request: Request) -> Response | None:
        user_id = request.path_params.get("user_id")
        if not isinstance(user_id, str) or len(user_id) > _USER_ID_MAX:
            return None
        ctx = get_ctx(request)
        claims = await current_user(request, ctx)
        return await _read_profile(request, claims, ctx, user_id)


async def get_user(
    user_id: Annotated[str, Path(max_length=_USER_ID_MAX)],
    claims: CurrentUser,
    ctx: Ctx,
    request: Request,
) -> Response:
    # Reached only when the fast handler above defers (see _ProfileReadRoute).
    return await _read_profile(request, claims, ctx, user_id)


router.add_api_route(
    "/users/{user_id}",
    get_user,
    methods=["GET"],
    response_model=ProfileOut,
    responses=problem_responses(401, 403, 404, 503),
    route_class_override=_ProfileReadRoute,
)


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
