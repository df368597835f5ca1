"""Routers' routes added to an app as its own, not behind `include_router`.

Why: since FastAPI 0.16x `include_router` keeps the included router nested
and resolves each request through it at run time, matching the path once to
choose the router and again inside it: ~10 µs of a ~70 µs profile read
(bench/README.md, target 1). Our routers take no include-time options
(prefix, tags, dependencies, route class and `include_in_schema` are the
router's own, and FastAPI bakes those into each route when it is declared),
so the routes are the same objects either way, with one lookup.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

__all__ = ["add_routes"]


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
