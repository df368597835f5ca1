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

from shared.http.openapi import PROBLEM_SCHEMA

__all__ = ["PROBLEM_JSON", "Problem", "install_problem_handlers", "problem_response"]

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("shared.http.problems")


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
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


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
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers malformed JSON with 422 but a body that is not even
        # UTF-8 with a bare 400 (found by schemathesis: b'\xff\xfe' as the
        # body of POST /login). One kind of fault, one documented answer.
        return problem_response(
            422,
            "Invalid request",
            "One or more fields are invalid.",
            slug="validation",
            errors=[{"field": "body", "message": "JSON decode error: not UTF-8"}],
        )
    return problem_response(exc.status_code, headers=exc.headers)


# Starlette sends the last-resort 500 from its outermost middleware, outside
# the edge middleware that adds these to every other answer (shared/http/middleware.py,
# which cannot be imported here): repeated so a 500 is no less protected.
_LAST_RESORT_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the operator's log; the client learns nothing internal.
    _log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    headers = dict(_LAST_RESORT_HEADERS)
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        headers["X-Request-ID"] = str(request_id)  # so a report can quote it
    return problem_response(500, detail="An unexpected error occurred.", headers=headers)


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A dependency (database, Redis) failed: nothing was changed, retrying is
    # safe. The exception class goes to the log, its message (which may hold
    # SQL or hostnames) does not go to the client.
    _log.warning(
        "dependency unavailable on %s %s: %s",
        request.method,
        request.url.path,
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
    _document_validation_problems(app)


def _document_validation_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what `_on_validation` answers.

    FastAPI documents every operation's 422 as its own `HTTPValidationError`
    JSON; ours is problem+json. Clients generated from the document, and
    schemathesis (which found the mismatch on GET /users?offset=-1), would
    otherwise expect a body this service never sends.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI caches it in app.openapi_schema: edited once
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                invalid = operation.get("responses", {}).get("422")
                if invalid is not None:
                    invalid["content"] = {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook
