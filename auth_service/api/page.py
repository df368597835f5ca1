"""GET /: the passkey page, and its two static assets.

No build step: one HTML file, one script, one stylesheet, served from a fixed
list (no path from the URL ever reaches the file system). The CSP allows
nothing but same-origin scripts, styles and fetches: no inline script or
style, no eval, no plugins, no framing, no foreign form targets. That makes
an injected `<script>` inert, and it is why the page's JS and CSS live in
files rather than in the HTML.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

router = APIRouter(include_in_schema=False)

_STATIC = FsPath(__file__).resolve().parent.parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # data: for the TOTP QR code, an SVG the server makes (segno) and the
        # page shows in an <img>: an image there never runs script.
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

_ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

# Page-specific headers only; nosniff, Referrer-Policy and X-Frame-Options
# are set for every answer by the shared edge (middleware / gateway).
_COMMON = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Keep other origins' windows out of ours (opener-based attacks on the
    # page that holds tokens in memory).
    "Cross-Origin-Opener-Policy": "same-origin",
}


@router.get("/")
async def index() -> FileResponse:
    # no-store (middleware default) for the HTML: a cached page could outlive
    # a CSP or script change.
    return FileResponse(
        _STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_COMMON
    )


@router.get("/static/{asset}")
async def asset(asset: Annotated[str, Path(max_length=32)]) -> FileResponse:
    media_type = _ASSETS.get(asset)
    if media_type is None:
        # A fixed list, looked up by exact name: no URL path ever reaches
        # the file system, so no traversal to defend against.
        raise StarletteHTTPException(404)
    # no-cache: revalidated (ETag) on every load, so a fixed script is picked
    # up at once while unchanged ones cost a 304.
    return FileResponse(
        _STATIC / asset, media_type=media_type, headers={**_COMMON, "Cache-Control": "no-cache"}
    )
