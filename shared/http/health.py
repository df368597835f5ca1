"""Liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

__all__ = ["health_router"]

_log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


def health_router(checks: Callable[[], Mapping[str, Check]]) -> APIRouter:
    """`/healthz` says the process runs; `/readyz` that its dependencies answer.

    Args:
        checks: returns name -> async probe; a probe fails by raising.
    """
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "A dependency does not answer"}})
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, probe in checks().items():
            try:
                await asyncio.wait_for(probe(), timeout=2.0)
                results[name] = "ok"
            except Exception as exc:  # any failure means "not ready"
                _log.warning("readiness check %s failed: %s", name, type(exc).__name__)
                results[name] = "unavailable"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": results},
            status_code=200 if ready else 503,
        )

    return router
