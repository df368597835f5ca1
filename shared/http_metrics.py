"""RED metrics middleware: request count and latency per route template.

Pure ASGI for the same reason as `shared.asgi`: it wraps every request, so
no BaseHTTPMiddleware (an extra task and body buffering per request).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import ServiceMetrics

__all__ = ["UNMATCHED", "HttpMetricsMiddleware", "metrics_method", "route_template"]

# Everything no route matched (scanners, typos) shares one label value, so
# a burst of random paths cannot create a series per path.
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
