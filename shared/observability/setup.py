"""One service's observability wiring: metrics, tracing and the audit sinks.

`create_app` builds an `Observability` and calls `instrument_app` last (so
the metrics middleware is the outermost of the app's own middleware); the
lifespan calls `start` with the clients it built and `stop` before
disposing of them. With METRICS_ENABLED / TRACING_ENABLED off the
corresponding parts are simply absent: no middleware, no `/metrics`, no
spans. Audit events are never switched off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.sink import (
    AuditCallbackHandler,
    AuditTableWriter,
    JsonLinesHandler,
    attach,
    detach,
)
from shared.db.reads import ReadSource
from shared.observability.http_metrics import HttpMetricsMiddleware, known_requests
from shared.observability.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from shared.observability.tracing import Tracing, sdk_disabled
from shared.runtime.settings import CommonSettings

if TYPE_CHECKING:
    from shared.observability.otlp_audit import OtlpAuditLogs

__all__ = ["Observability"]


class _Signer(Protocol):
    def sign(self, claims: dict[str, Any]) -> str: ...


class _CountingSigner:
    """Counts every JWT the wrapped signer signs, by kind (access / service)."""

    def __init__(self, signer: _Signer, count: Callable[[Mapping[str, Any]], None]) -> None:
        self._signer = signer
        self._count = count

    def sign(self, claims: dict[str, Any]) -> str:
        token = self._signer.sign(claims)
        self._count(claims)
        return token


class Observability:
    """Metrics, tracing and audit sinks of one service instance.

    Args:
        service_name: `service` label, `service.name`, audit `service`.
        settings: the service's settings (only the observability fields are read).
        issuer: True for the auth service (pre-creates its login/token series).
    """

    def __init__(self, *, service_name: str, settings: CommonSettings, issuer: bool) -> None:
        self.service = service_name
        self.metrics: ServiceMetrics | None = None
        self.tracing: Tracing | None = None
        if settings.metrics_enabled:
            self.metrics = ServiceMetrics(service_name)
            self.metrics.initialise(issuer=issuer)
        # OTEL_SDK_DISABLED is the operator's OpenTelemetry-wide off switch.
        off = sdk_disabled()
        self._tracing_enabled = settings.tracing_enabled and not off
        self._otlp_endpoint = "" if off else settings.otel_exporter_otlp_endpoint
        self._sql_min_ms = settings.tracing_sql_min_ms
        self._stdout = settings.audit_stdout
        self._writer: AuditTableWriter | None = None
        self._otlp_logs: OtlpAuditLogs | None = None  # with an OTLP endpoint
        self._handlers: list[logging.Handler] = []

    # --- create_app ---------------------------------------------------------------

    def instrument_app(self, app: FastAPI) -> None:
        """Add the metrics middleware and `/metrics`, and trace the app.

        Call after the app's own middleware and routes are added.
        """
        app.state.obs = self
        metrics = self.metrics
        if metrics is not None:
            # Not routed by the gateway; scraped on the service port only.
            def metrics_endpoint() -> Response:  # sync: runs in the threadpool
                return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

            app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
            # Every route's series at 0 from the first scrape, so the first
            # burst on a fresh process shows in rate()/increase().
            metrics.initialise_requests(known_requests(app.routes))
        if self._tracing_enabled:
            self.tracing = Tracing(
                service_name=self.service,
                version=app.version,
                otlp_endpoint=self._otlp_endpoint,
                sql_min_ms=self._sql_min_ms,
            )
            # The span middleware records the request metrics too: one
            # middleware per request instead of two (bench/README.md, target 6).
            self.tracing.instrument_app(app, metrics=metrics)
        elif metrics is not None:
            app.add_middleware(HttpMetricsMiddleware, metrics=metrics)

    def counting_signer(self, signer: _Signer) -> _Signer:
        """Wrap the token signer so `idp_tokens_issued_total` counts what it signs."""
        return (
            signer if self.metrics is None else _CountingSigner(signer, self.metrics.token_signed)
        )

    @property
    def on_jwks_fetch(self) -> Callable[[str], None] | None:
        """The `JWKSClient(on_fetch=...)` callback, or None without metrics."""
        return None if self.metrics is None else self.metrics.jwks_fetch

    def add_gauge(self, name: str, documentation: str, fn: Callable[[], float]) -> None:
        if self.metrics is not None:
            self.metrics.add_gauge(name, documentation, fn)

    # --- lifespan -----------------------------------------------------------------

    async def start(
        self,
        *,
        engine: AsyncEngine,
        reads: ReadSource | None = None,
        redis: Any = None,
        http: Iterable[httpx.AsyncClient] = (),
    ) -> None:
        """Trace the clients, start the audit table writer, attach the audit handlers.

        Audit events go to the table (always), stdout (AUDIT_STDOUT), the
        security counters (METRICS_ENABLED) and OTLP logs (with an endpoint).
        """
        if self.tracing is not None:
            self.tracing.instrument_engine(engine)
            if reads is not None:
                self.tracing.instrument_reads(reads)
            if redis is not None:
                self.tracing.instrument_redis(redis)
            for client in http:
                self.tracing.instrument_httpx(client)
        on_drop = None if self.metrics is None else self.metrics.audit_write_failed
        self._writer = AuditTableWriter(engine, service=self.service, on_drop=on_drop)
        await self._writer.start()
        self._handlers = [self._writer.handler]
        if self._stdout:
            self._handlers.append(JsonLinesHandler(self.service))
        if self.metrics is not None:
            self._handlers.append(AuditCallbackHandler(self.service, self.metrics.observe_audit))
        if self._otlp_endpoint:
            # Imported only when used: the OTLP/protobuf stack is a large share
            # of a cold start that exports nothing.
            from shared.observability.otlp_audit import OtlpAuditLogs

            self._otlp_logs = OtlpAuditLogs(service_name=self.service, endpoint=self._otlp_endpoint)
            self._handlers.append(self._otlp_logs.handler)
        attach(*self._handlers)

    async def flush_audit(self) -> None:
        """Wait until the events emitted so far are in the audit table."""
        if self._writer is not None:
            await self._writer.flush()

    async def stop(self) -> None:
        """Detach the handlers, write what is queued, flush spans. Idempotent."""
        detach(*self._handlers)
        self._handlers = []
        if self._writer is not None:
            await self._writer.aclose()
            self._writer = None
        # Both block until their exporter has flushed: off the event loop.
        if self._otlp_logs is not None:
            await asyncio.to_thread(self._otlp_logs.shutdown)
            self._otlp_logs = None
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
