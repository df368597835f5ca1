"""The form-encoded OAuth endpoints' common edge: body parsing and error shape."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

# RFC 6749 §5.1: token responses must not be cached by anyone.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """RFC 6749 §5.2 error response (RFC 7009 §2.2.1 uses the same)."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


async def read_form(request: Request, *, max_field: int) -> dict[str, str] | JSONResponse:
    """The string fields of an `application/x-www-form-urlencoded` body, or
    the `invalid_request` answer for anything else (RFC 6749 §3.2)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return oauth_error(400, "invalid_request", "Use application/x-www-form-urlencoded.")
    try:
        # The part cap counts bytes; the exact bound (characters) is checked below.
        form = await request.form(max_files=0, max_fields=16, max_part_size=4 * max_field + 64)
    except Exception:
        return oauth_error(400, "invalid_request", "Malformed form body.")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if any(len(v) > max_field for v in fields.values()):
        return oauth_error(400, "invalid_request", "A parameter is too long.")
    return fields
