"""CORS for browser clients on other origins: only the configured ones.

The API authenticates with bearer tokens, never cookies, so credentials mode
stays off: a page on an allowed origin can call the API with a token it
holds, and no origin can ride on a user's ambient credentials.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

__all__ = ["install_cors"]


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Answer CORS for `origins` only; with none, add nothing (same-origin only).

    Args:
        app: the service.
        origins: exact origins (`https://app.example.com`), or `*` outside
            production (settings refuse it in production).
    """
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_credentials=False,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        # Headers a script needs to read: where a new user lives, when to
        # retry, why a token was refused, which id to quote in a report.
        expose_headers=["Location", "Retry-After", "WWW-Authenticate", "X-Request-ID"],
        max_age=600,
    )
