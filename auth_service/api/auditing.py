"""Audit events of the auth service's routers, from the outcome of a service call.

A router emits exactly one event per request it handles, once the service
call's result is known. `audited` does it for the common shape of a route
(call the service; on a domain error, audit the failure and answer with its
problem; otherwise audit the success with what the route adds). The reason is
internal (the audit trail and metrics); clients keep getting the generic
answers of `to_problem`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from auth_service.api.problems import UNAVAILABLE, ProblemOptions, to_problem
from auth_service.errors import (
    AuthError,
    CeremonyFailed,
    EmailNotVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidOneTimeToken,
    MailUnavailable,
    RateLimited,
    RefreshTokenInvalid,
    RefreshTokenReused,
    SecondFactorRequired,
    WeakPassword,
)
from auth_service.services.oauth.errors import CodeReused, OAuthProtocolError
from shared.audit.events import Detail, audit_event
from shared.http.problems import Problem

__all__ = ["Audit", "audited", "audited_failure", "failure_reason", "validation_audited_route"]

_DEFAULTS = ProblemOptions()

_REASONS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    (InvalidCredentials, "invalid_credentials"),
    (EmailTaken, "duplicate"),
    (WeakPassword, "password_policy"),
    (InvalidOneTimeToken, "invalid_token"),
    (MailUnavailable, "mail_unavailable"),
    (UNAVAILABLE, "unavailable"),
)

# The `action` of a rate_limited event: what the client was attempting.
_ACTIONS = {
    "user.register": "register",
    "token.refresh": "refresh",
    "token.revoke": "revoke",
    "password.forgot": "forgot",
    "password.change": "password_change",
    "account.delete": "account_delete",
    "email.change": "email_change",
    "email.verify_resend": "verify_resend",
    "mfa.verify": "mfa",
}


def failure_reason(exc: Exception) -> str:
    """A stable, non-secret label for why a call failed."""
    if isinstance(exc, RefreshTokenInvalid | CeremonyFailed):
        return exc.reason  # which refusal: unknown, idle session, failed check
    if isinstance(exc, OAuthProtocolError):
        return exc.reason  # RFC 6749's own code (invalid_client, ...), or finer
    for types, reason in _REASONS:
        if isinstance(exc, types):
            return reason
    if isinstance(exc, AuthError):
        # The domain error's name: `LastCredential` -> `last_credential`.
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
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
    """Emit the one event for a failed `event` and return `exc` for re-raising."""
    _failure_event(event, exc, request, "failure", user_id, session_id, fields)
    return exc


def _failure_event(
    event: str,
    exc: Exception,
    request: Request,
    outcome: str,
    user_id: str | None,
    session_id: str | None,
    fields: Mapping[str, Detail],
) -> None:
    """The one event for a failed `event`, `outcome` failure or denied.

    A rate-limited attempt is a `rate_limited` event (reason: which limit,
    `action`: what was attempted); a rotated refresh token presented again is
    `refresh.reuse_detected` (its session is revoked by then). A failed
    ceremony names the account it was for, when it got that far.
    """
    reason = failure_reason(exc)
    if isinstance(exc, RateLimited):
        # The limit's event, not the attempt's: `action` says what was tried.
        fields = {"action": _ACTIONS.get(event, event), "retry_after": exc.retry_after}
        event, outcome, reason = "rate_limited", "denied", exc.scope
        user_id = session_id = None
    elif isinstance(exc, RefreshTokenReused):
        event, outcome, reason = "refresh.reuse_detected", "denied", "rotated_token_presented"
        user_id, session_id, fields = exc.user_id, exc.sid, {"session_revoked": True}
    elif isinstance(exc, CodeReused):
        # Names the session the code had issued: revoked by now (RFC 6749 §4.1.2).
        user_id, session_id = exc.user_id, exc.sid
        fields = {**fields, "session_revoked": exc.sid is not None}
    elif user_id is None and isinstance(
        exc, CeremonyFailed | SecondFactorRequired | EmailNotVerified
    ):
        user_id = exc.user_id
    audit_event(
        event,
        outcome=outcome,
        request=request,
        user_id=user_id,
        session_id=session_id,
        reason=reason,
        service=None,  # the app's; explicit so `fields` cannot land here
        **fields,
    )


class Audit:
    """The event `audited` emits: who, and what the route adds on success."""

    def __init__(self, user_id: str | None, session_id: str | None) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.details: dict[str, Detail] = {}
        self.handed_over = False

    def success(
        self, *, user_id: str | None = None, session_id: str | None = None, **details: Detail
    ) -> None:
        """Name the subject the service call revealed, and add detail fields."""
        self.user_id = user_id or self.user_id
        self.session_id = session_id or self.session_id
        self.details.update(details)

    def hand_over(self) -> None:
        """Another event (of the route's next step) records this request."""
        self.handed_over = True


@asynccontextmanager
async def audited(
    event: str,
    request: Request,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    denied: bool = False,
    audits: type[Exception] | tuple[type[Exception], ...] = Exception,
    problem: ProblemOptions | Callable[[Exception], Problem] | None = None,
    **fields: Detail,
) -> AsyncIterator[Audit]:
    """Run a route's service call as one audited `event`.

    Args:
        event: the audit event type.
        request: the request (client IP, user agent, request id).
        user_id: the subject, when the route knows it already.
        session_id: the session, likewise.
        denied: a failure is a refusal of the caller (`denied`), not a
            failed attempt (`failure`).
        audits: the failures that are events; others only get their problem.
        problem: what the route tells the problem map (`to_problem`), or
            the route's own map (the OAuth endpoints answer in RFC 6749's shape).
        fields: detail fields of both outcomes' events.

    Raises:
        Problem: the problem of a domain or dependency error, after its event.
    """
    audit = Audit(user_id, session_id)
    try:
        yield audit
    except Problem:
        raise  # the route chose its answer (and its event) itself
    except Exception as exc:
        if isinstance(exc, audits):
            outcome = "denied" if denied else "failure"
            _failure_event(event, exc, request, outcome, user_id, session_id, fields)
        answer = problem if callable(problem) else partial(to_problem, opts=problem or _DEFAULTS)
        raise answer(exc) from None
    if not audit.handed_over:
        audit_event(
            event,
            outcome="success",
            request=request,
            user_id=audit.user_id,
            session_id=audit.session_id,
            reason=None,
            service=None,
            **{**fields, **audit.details},
        )


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
