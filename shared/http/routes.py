"""Routers' routes added to an app as its own, not behind `include_router`;
routes with a fast path beside FastAPI's own handler.

Why: since FastAPI 0.16x `include_router` keeps the included router nested
and resolves each request through it at run time, matching the path once to
choose the router and again inside it: ~10 µs of a ~70 µs profile read
(bench/README.md, target 1). Our routers take no include-time options
(prefix, tags, dependencies, route class and `include_in_schema` are the
router's own, and FastAPI bakes those into each route when it is declared),
so the routes are the same objects either way, with one lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute

__all__ = ["FastPathRoute", "add_routes"]


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Append every route of `routers` to `app`'s own router, in order.

    Raises:
        ValueError: a router holds an included router of its own (those do
            need `include_router`).
    """
    for router in routers:
        for route in router.routes:
            if not hasattr(route, "path"):
                raise ValueError(f"{route!r} is not a plain route: include its router instead")
            app.router.routes.append(route)
    app.openapi_schema = None  # rebuilt from the routes on the next request


class FastPathRoute(APIRoute):
    """A route whose requests skip FastAPI's per-request dependency solving
    when `fast` can answer them exactly as the declared endpoint would.

    For the hot paths only (bench/README.md, targets 1 and 5): solving the
    declared parameters and dependencies can cost more than the work. A
    subclass's `fast` does what they declare, in the same order, and returns
    None for anything it would not answer identically; FastAPI's own handler
    then answers, so errors keep their exact shape. Dependency overrides
    (tests) always take FastAPI's handler. The OpenAPI document is built from
    the declared endpoint, unchanged.
    """

    async def fast(self, request: Request) -> Response | None:
        """The answer, or None to let FastAPI's handler answer (here: always)."""
        return None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        generic = super().get_route_handler()
        fast = self.fast

        async def handler(request: Request) -> Response:
            if not request.app.dependency_overrides:
                response = await fast(request)
                if response is not None:
                    return response
            return await generic(request)

        return handler
