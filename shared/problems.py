"""RFC 9457 problem details: the one error shape both services answer with.

Services raise domain errors; the edge (routers, dependencies) turns them into
`Problem`. The handlers installed here make sure that every other failure,
the framework's own 404/405/422 included, leaves as `application/problem+json`
too, and that nothing internal (stack traces, SQL, input values) reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["PROBLEM_JSON", "Problem", "install_problem_handlers", "problem_response"]

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("shared.problems")


def _problem_type(slug: str | None) -> str:
    # RFC 9457 §4.2.1: "about:blank" when the status phrase says it all;
    # otherwise a stable URN clients can branch on without parsing `title`.
    return f"urn:idp:problem:{slug}" if slug else "about:blank"


def problem_response(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Build an `application/problem+json` response (RFC 9457 §3)."""
    body: dict[str, Any] = {
        "type": _problem_type(slug),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = list(errors)
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


class Problem(Exception):
    """An HTTP-level failure chosen at the edge of a service.

    Args:
        status: the HTTP status code.
        title: short, stable summary; defaults to the status phrase.
        detail: human-readable explanation for this occurrence. Never put a
            secret or an input value here.
        slug: problem type suffix (`urn:idp:problem:<slug>`).
        headers: extra response headers (`WWW-Authenticate`, `Retry-After`).
        errors: per-field validation messages `[{field, message}]`.
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(title or HTTPStatus(status).phrase)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = dict(headers or {})
        self.errors = errors
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        return problem_response(
            self.status,
            self.title,
            self.detail,
            slug=self.slug,
            headers=self.headers,
            errors=self.errors,
            extra=self.extra,
        )


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for err in exc.errors():
        # Drop the leading "body"/"query" location; never copy `input` back:
        # it would echo passwords and tokens into responses and logs.
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        out.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
    return out


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response()


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422,
        "Invalid request",
        "One or more fields are invalid.",
        slug="validation",
        errors=_field_errors(exc),
    )


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc.status_code, headers=exc.headers)


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the operator's log; the client learns nothing internal.
    _log.error(
        "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
    )
    return problem_response(500, detail="An unexpected error occurred.")


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A dependency (database, Redis) failed: nothing was changed, retrying is
    # safe. The exception class goes to the log, its message (which may hold
    # SQL or hostnames) does not go to the client.
    _log.warning(
        "dependency unavailable on %s %s: %s", request.method, request.url.path,
        type(exc).__name__,
    )
    return problem_response(
        503,
        detail="A dependency is unavailable; nothing was changed. Retry shortly.",
        slug="unavailable",
        headers={"Retry-After": "2"},
    )


def install_problem_handlers(
    app: FastAPI, *, unavailable: tuple[type[Exception], ...] = ()
) -> None:
    """Route every error path of `app` through problem+json.

    Args:
        app: the application.
        unavailable: exception types meaning "a dependency is down" (503).
    """
    app.add_exception_handler(Problem, _on_problem)
    for exc_type in unavailable:
        app.add_exception_handler(exc_type, _on_unavailable)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unhandled)
