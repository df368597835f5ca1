"""Audit events of the auth service's routers, from the outcome of a service call.

The routers emit exactly one event per request they handle, after the
service call's result is known: `audited_failure` for an exception, a plain
`audit_event` for a success. The reason is internal (the audit trail and
metrics); clients keep getting the generic answers of `to_problem`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from auth_service.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    MailUnavailable,
    RateLimited,
    RefreshTokenInvalid,
    RefreshTokenReused,
    UpstreamUnavailable,
    WeakPassword,
)
from shared.audit.events import Detail, audit_event

__all__ = ["audited_failure", "failure_reason", "validation_audited_route"]

_REASONS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    (InvalidCredentials, "invalid_credentials"),
    (EmailTaken, "duplicate"),
    (WeakPassword, "password_policy"),
    (InvalidOneTimeToken, "invalid_token"),
    (MailUnavailable, "mail_unavailable"),
    ((UpstreamUnavailable, RedisError, SQLAlchemyError, OSError), "unavailable"),
)

# The `action` of a rate_limited event: what the client was attempting.
_ACTIONS = {
    "user.register": "register",
    "token.refresh": "refresh",
    "token.revoke": "revoke",
    "password.forgot": "forgot",
    "password.change": "password_change",
}


def failure_reason(exc: Exception) -> str:
    """A stable, non-secret label for why a call failed."""
    if isinstance(exc, RefreshTokenInvalid):
        return exc.reason  # which refusal: unknown, idle session, wrong client
    for types, reason in _REASONS:
        if isinstance(exc, types):
            return reason
    return "error"


def audited_failure(
    event: str,
    exc: Exception,
    request: Request,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    **fields: Detail,
) -> Exception:
    """Emit the one event for a failed `event` and return `exc` for re-raising.

    A rate-limited attempt is a `rate_limited` event (reason: which limit,
    `action`: what was attempted); a rotated refresh token presented again is
    `refresh.reuse_detected` (its session is revoked by then).
    """
    if isinstance(exc, RateLimited):
        audit_event(
            "rate_limited",
            outcome="denied",
            request=request,
            reason=exc.scope,
            action=_ACTIONS.get(event, event),
            retry_after=exc.retry_after,
        )
    elif isinstance(exc, RefreshTokenReused):
        audit_event(
            "refresh.reuse_detected",
            outcome="denied",
            request=request,
            user_id=exc.user_id,
            session_id=exc.sid,
            reason="rotated_token_presented",
            session_revoked=True,
        )
    else:
        audit_event(
            event,
            outcome="failure",
            request=request,
            user_id=user_id,
            session_id=session_id,
            reason=failure_reason(exc),
            service=None,  # the app's; explicit so `fields` cannot land here
            **fields,
        )
    return exc


def validation_audited_route(event: str) -> type[APIRoute]:
    """A route class that audits requests failing validation as `event` failures.

    Body validation fails before the endpoint runs, so the endpoint cannot
    emit the event itself (by design, a registration rejected as invalid is on
    the trail). Only field names and error types are kept, never the values.
    """

    class _AuditedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def audited(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    fields = sorted(
                        {
                            ".".join(str(p) for p in e.get("loc", ())[1:]) or "body"
                            for e in exc.errors()
                        }
                    )
                    audit_event(
                        event,
                        outcome="failure",
                        request=request,
                        reason="validation",
                        fields=",".join(fields)[:200],
                    )
                    raise

            return audited

    return _AuditedRoute
