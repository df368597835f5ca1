"""`build_app`: what both services' `create_app` used to write out twice.

A service hands over what is its own (its settings, its context builder,
its routers, what it runs besides serving) and gets back the app with
everything both share, in the order it matters:

- the FastAPI app, with docs and the OpenAPI document only while
  DOCS_ENABLED (production refuses it, `shared/runtime/settings.py`);
- RFC 9457 problem handlers, a down dependency answered as 503
  (`shared/http/unavailable.py`);
- the service's routes, then `/healthz` and `/readyz`;
- CORS inside the request-context middleware (so preflights get a
  request id too), and the metrics and spans outermost, added last
  (`shared/observability/setup.py`);
- the lifespan: build the context, prepare or refuse the backends
  (`shared/runtime/preflight.py`), start the audit writer after the
  migrations (it needs its table), run the service's own parts, settle
  the heap (`shared/runtime/heap.py`), and undo all of it in reverse.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from fastapi import APIRouter, FastAPI

from shared.db.migrations import ServiceMigrations
from shared.http.access_log import install_access_log_filter
from shared.http.cors import install_cors
from shared.http.health import Check, health_router
from shared.http.middleware import RequestContextMiddleware
from shared.http.problems import install_problem_handlers
from shared.http.routes import add_routes
from shared.http.unavailable import DEPENDENCY_ERRORS
from shared.observability.setup import Observability
from shared.observability.tracing import FASTAPI_TELEMETRY_OFF
from shared.runtime.heap import settle_after_startup, thaw
from shared.runtime.preflight import prepare_or_release
from shared.runtime.settings import CommonSettings
from shared.service.backends import Backends, backend_checks, close_backends

__all__ = ["build_app"]

Ctx = TypeVar("Ctx", bound=Backends)


def _nothing_else(_ctx: object, _obs: Observability) -> AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


def build_app(
    settings: CommonSettings,
    *,
    service_name: str,
    title: str,
    issuer: bool,
    migrations: ServiceMigrations,
    build_context: Callable[[Observability], Ctx],
    routers: Sequence[APIRouter],
    running: Callable[[Ctx, Observability], AbstractAsyncContextManager[None]] = _nothing_else,
    checks: Callable[[Ctx], Mapping[str, Check]] = backend_checks,
) -> FastAPI:
    """Build one service's app around its own parts.

    Args:
        settings: the service's validated settings.
        service_name: its SERVICE_NAME (a setting of each service's own class).
        title: the OpenAPI title.
        issuer: True for the auth service (its login and token metric series).
        migrations: the service's schema, upgraded or checked at start.
        build_context: builds the service's context in the lifespan (never
            at import or in `create_app`), given the app's observability.
        routers: the service's routers, in the order their routes are added.
        running: what the service runs while it serves (a key reloader, a
            revocation feed), entered after the audit writer starts and
            left before it stops.
        checks: `/readyz`'s probes for a context (its database and Redis).
    """
    logging.basicConfig(level=settings.log_level)
    # Query strings can carry one-time tokens (reset links): uvicorn's access
    # log shows them redacted (shared/http/access_log.py).
    install_access_log_filter()
    obs = Observability(service_name=service_name, settings=settings, issuer=issuer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(obs)
        # Development: `upgrade head`. Production: never touch the schema;
        # refuse to start unless it is at head and Redis is a real one.
        await prepare_or_release(
            engine=ctx.engine,
            redis=ctx.redis,
            http=[ctx.http],
            migrations=migrations,
            production=settings.is_production,
        )
        app.state.ctx = ctx
        # After the migrations: the audit writer needs its table.
        await obs.start(engine=ctx.engine, reads=ctx.reads, redis=ctx.redis, http=[ctx.http])
        try:
            async with running(ctx, obs):
                # Start-up garbage (imports, migrations, the block-list) is gone
                # now: no full-GC pauses over start-up's objects.
                settle_after_startup()
                try:
                    yield
                finally:
                    thaw()
        finally:
            await obs.stop()
            await close_backends(ctx)

    app = FastAPI(
        title=title,
        version="0.1.0",
        lifespan=lifespan,
        telemetry=FASTAPI_TELEMETRY_OFF,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.service_name = service_name
    install_problem_handlers(app, unavailable=DEPENDENCY_ERRORS)
    add_routes(app, *routers)
    add_routes(app, health_router(lambda: checks(app.state.ctx)))
    # Inside the request-context middleware: preflights get a request id too.
    install_cors(app, settings.cors_origin_list)
    app.add_middleware(
        RequestContextMiddleware,
        trusted_proxies=settings.proxy_networks,
        max_body_bytes=settings.max_body_bytes,
        hsts=settings.issuer_is_https,
    )
    # Last: metrics and spans wrap all of the above (one middleware when both
    # are on, shared/observability/server_span.py); /metrics is added.
    obs.instrument_app(app)
    return app
