"""RED metrics middleware: request count and latency per route template.

Pure ASGI for the same reason as `shared.http.middleware`: it wraps every request, so
no BaseHTTPMiddleware (an extra task and body buffering per request).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.observability.metrics import ServiceMetrics

__all__ = [
    "UNMATCHED",
    "HttpMetricsMiddleware",
    "known_requests",
    "metrics_method",
    "route_template",
]

# Everything no route matched (scanners, typos) shares one label value, so
# a burst of random paths cannot create a series per path.
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Any route can fail (500, counted by the middleware for an escaping
# exception); any route reading a body can get 413 (shared.http.middleware's limit).
_ANY_ROUTE = (500,)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def known_requests(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(method, route template, statuses) for every request a route can answer.

    The statuses are the route's own (its status code and its documented
    `responses`, 422 when it validates input), plus those any route can
    answer. `<unmatched>` gets 404 for every method label: scanners are the
    traffic a security team most wants to see from the first request on.
    """
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        template = getattr(route, "path_format", None) or route.path
        own = {int(getattr(route, "status_code", None) or 200)}
        extra = (getattr(route, "openapi_extra", None) or {}).get("responses", {})
        for code in (*getattr(route, "responses", {}), *extra):
            if str(code).isdigit():
                own.add(int(code))
        dependant = getattr(route, "dependant", None)
        if dependant is not None and (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
        ):
            own.add(422)
        for method in sorted(route.methods):
            statuses = own | set(_ANY_ROUTE) | ({413} if method in _BODY_METHODS else set())
            yield method, template, tuple(sorted(statuses))
    for method in sorted(_METHODS | {"OTHER"}):
        yield method, UNMATCHED, (404,)


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request (`/users/{user_id}`).

    Read after the app ran: the router writes `scope["route"]` into the very
    dict the middleware holds. Never the raw path, which would put user ids
    into label values and let any client mint new series.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def metrics_method(scope: Scope) -> str:
    """The `method` label: one of the standard methods, else `OTHER` (bounded)."""
    method: str = scope["method"]
    return method if method in _METHODS else "OTHER"


class HttpMetricsMiddleware:
    """Counts and times every HTTP request.

    Args:
        app: the wrapped ASGI app.
        metrics: where to record.
    """

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # An exception escaping the app becomes a 500 further out.
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(
                metrics_method(scope), route_template(scope), status, time.perf_counter() - start
            )
