"""shared.http.routes: `add_routes` makes routes the app's own, answering as when
included; a `FastPathRoute` answers from its fast path when it can, from
FastAPI's handler otherwise."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response

from shared.http.routes import FastPathRoute, add_routes

pytestmark = pytest.mark.anyio


def _router() -> APIRouter:
    router = APIRouter(prefix="/things", tags=["things"])

    @router.get("/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    return router


async def test_added_routes_answer_and_document_like_included_ones() -> None:
    included, added = FastAPI(), FastAPI()
    included.include_router(_router())
    add_routes(added, _router())
    assert [getattr(r, "path", None) for r in added.router.routes][-1] == "/things/{thing_id}"
    for app in (included, added):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/things/7")).json() == {"id": 7}
            assert (await client.get("/things/x")).status_code == 422
            assert (await client.get("/nothing")).status_code == 404
    assert included.openapi()["paths"] == added.openapi()["paths"]


def test_a_router_with_an_included_router_is_refused() -> None:
    outer = APIRouter()
    outer.include_router(_router())
    with pytest.raises(ValueError, match="include its router"):
        add_routes(FastAPI(), outer)


# --- FastPathRoute -----------------------------------------------------------------


def _who() -> str:
    return "declared"


class _Route(FastPathRoute):
    async def fast(self, request: Request) -> Response | None:
        if request.query_params.get("fast") != "yes":
            return None  # not one it answers: FastAPI's handler does
        return Response("fast path", media_type="text/plain")


def _app() -> FastAPI:
    app = FastAPI()

    async def endpoint(who: str = Depends(_who)) -> Response:
        return Response(f"FastAPI's handler, {who}", media_type="text/plain")

    app.router.add_api_route("/thing", endpoint, methods=["GET"], route_class_override=_Route)
    return app


async def _get(app: FastAPI, query: str) -> str:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get(f"/thing{query}")
    assert r.status_code == 200
    return r.text


async def test_the_fast_path_answers_what_it_can_and_defers_the_rest() -> None:
    app = _app()
    assert await _get(app, "?fast=yes") == "fast path"
    assert await _get(app, "?fast=no") == "FastAPI's handler, declared"


async def test_dependency_overrides_always_take_fastapis_handler() -> None:
    app = _app()
    app.dependency_overrides[_who] = lambda: "overridden"
    assert await _get(app, "?fast=yes") == "FastAPI's handler, overridden"


async def test_the_declared_endpoint_is_what_the_openapi_document_shows() -> None:
    paths = _app().openapi()["paths"]
    assert list(paths) == ["/thing"]
    assert "get" in paths["/thing"]
