"""shared.http.routes.add_routes: routes become the app's own, answering as when included."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from shared.http.routes import add_routes

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
