"""Audit events as OTLP log records, when an OTLP endpoint is configured.

Containers' stdout is not always where a security team collects from (the
compose stack's collector sees only OTLP), so with
`OTEL_EXPORTER_OTLP_ENDPOINT` set each audit event is also sent to
`<endpoint>/v1/logs`: the audit record as the body's map, the event name as
`event_name`, and the current span's context so the log links to its trace.

The OpenTelemetry logs SDK still lives under `_logs` in the Python SDK; it
is isolated here so a rename touches one module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from shared.audit.sink import AuditCallbackHandler

__all__ = ["OtlpAuditLogs"]

_log = logging.getLogger(__name__)


def _primitive(value: object) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else str(value)


class OtlpAuditLogs:
    """An OTLP log pipeline for one service's audit events.

    Args:
        service_name: `service.name` of the resource.
        endpoint: OTLP/HTTP base URL (`/v1/logs` is appended).
        exporter: replaces the OTLP exporter (tests).
    """

    def __init__(
        self, *, service_name: str, endpoint: str, exporter: LogRecordExporter | None = None
    ) -> None:
        self._provider = LoggerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        if exporter is None:
            url = f"{endpoint.rstrip('/')}/v1/logs"
            exporter = OTLPLogExporter(endpoint=url)
        # Batched on the SDK's thread: never a network call on the event loop.
        self._provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        self._logger = self._provider.get_logger("idp.audit")
        self.handler = AuditCallbackHandler(service_name, self._emit)

    def _emit(self, record: Mapping[str, Any]) -> None:
        body = {k: _primitive(v) for k, v in record.items() if v is not None}
        self._logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            event_name=str(record.get("event")),
            body=body,
            attributes={"log.type": "audit", "event.outcome": str(record.get("outcome"))},
        )

    def shutdown(self) -> None:
        """Flush and stop (blocks briefly; call off the event loop)."""
        try:
            self._provider.shutdown()
        except Exception:
            _log.warning("audit log exporter shutdown failed", exc_info=True)
