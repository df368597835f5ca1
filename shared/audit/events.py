"""Audit events: one structured record per security-relevant action.

Events go to the `audit` logger as one JSON object each; handlers attached by
the service send them to stdout and to its audit table. Never pass a
password, token, refresh token, recovery code or WebAuthn secret here: the
record holds identifiers and outcomes only.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from starlette.requests import Request

__all__ = ["AUDIT_LOGGER", "audit_event", "current_trace_id"]

AUDIT_LOGGER = "audit"
_log = logging.getLogger(AUDIT_LOGGER)
_warn = logging.getLogger(__name__)

Detail = str | int | float | bool | None

# Detail names that smell of a secret. A caller passing one is a bug; the
# value is replaced rather than the request failed, and the bug is logged.
_SECRET_NAME = re.compile(
    r"pass(word|phrase)?|secret|token|credential|recovery|otp|assertion|attestation|private",
    re.IGNORECASE,
)
_REDACTED = "[redacted]"


def current_trace_id() -> str | None:
    """The W3C trace id (32 hex) of the current span, or None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def audit_event(
    event: str,
    *,
    outcome: str,
    request: Request | None = None,
    service: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    reason: str | None = None,
    **details: Detail,
) -> dict[str, Any]:
    """Emit one audit event and return the record.

    Args:
        event: dotted event type, e.g. `login`, `refresh.reuse_detected`.
        outcome: `success`, `failure` or `denied`.
        request: the request, for client IP, user agent and request id.
        service: emitting service; defaults to the app's `state.service_name`.
        user_id: the subject, when known.
        session_id: the session (`sid`), when known.
        reason: internal reason for a failure (never shown to clients).
        details: further non-secret fields.
    """
    record: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "outcome": outcome,
        "service": service,
        "user_id": user_id,
        "session_id": session_id,
        "reason": reason,
        "client_ip": None,
        "user_agent": None,
        "request_id": None,
        "trace_id": current_trace_id(),
    }
    if request is not None:
        state = request.scope.get("state", {})
        record["client_ip"] = state.get("client_ip")
        record["request_id"] = state.get("request_id")
        record["user_agent"] = request.headers.get("user-agent", "")[:256] or None
        if service is None:
            record["service"] = getattr(request.app.state, "service_name", None)
    for name, value in details.items():
        if _SECRET_NAME.search(name) and name not in record:
            _warn.error("audit detail %r looks like a secret; value dropped", name)
            value = _REDACTED
        record[name] = value
    if _log.isEnabledFor(logging.INFO):
        # The record made and handled directly, not through `Logger.info`:
        # that walks the stack for the caller's file and line (findCaller),
        # which no audit handler reads; ~10 µs of a refresh (P14).
        _log.handle(
            _log.makeRecord(
                _log.name, logging.INFO, "", 0, event, (), None, extra={"audit": record}
            )
        )
    return record
