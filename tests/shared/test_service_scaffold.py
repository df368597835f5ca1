"""shared.service.app.build_app: a service's own parts inside the scaffold both services share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import make_engine
from shared.db.reads import EngineReads
from shared.observability.setup import Observability
from shared.runtime.settings import CommonSettings
from shared.service.app import build_app
from shared.service.backends import make_redis
from tests.conftest import REDIS_URL
from tests.e2e.processes import free_port
from user_service.migrate import MIGRATIONS

pytestmark = pytest.mark.anyio


@dataclass
class _Ctx:
    engine: AsyncEngine
    redis: Redis
    http: httpx.AsyncClient

    @property
    def reads(self) -> EngineReads:
        return EngineReads(self.engine)  # SQLite: reads share the engine (make_reads)


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    return router


def _app(tmp_path: Path, redis_url: str, seen: list[str], built: list[_Ctx]) -> FastAPI:
    def build_context(_obs: Observability) -> _Ctx:
        ctx = _Ctx(
            make_engine(f"sqlite+aiosqlite:///{tmp_path}/svc.db"),
            make_redis(CommonSettings(env="test", redis_url=redis_url)),
            httpx.AsyncClient(),
        )
        built.append(ctx)
        return ctx

    @asynccontextmanager
    async def running(ctx: _Ctx, _obs: Observability) -> AsyncIterator[None]:
        seen.append(f"start, http open: {not ctx.http.is_closed}")
        yield
        # Left before the scaffold closes the pools: the part can still use them.
        seen.append(f"stop, http open: {not ctx.http.is_closed}")

    return build_app(
        CommonSettings(env="test", redis_url=redis_url),
        service_name="scaffold-test",
        title="Scaffold test",
        issuer=False,
        migrations=MIGRATIONS,
        build_context=build_context,
        routers=[_router()],
        running=running,
    )


async def test_the_service_part_runs_while_its_backends_are_open(tmp_path: Path) -> None:
    seen: list[str] = []
    built: list[_Ctx] = []
    app = _app(tmp_path, REDIS_URL, seen, built)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c,
    ):
        assert (await c.get("/things/7")).json() == {"id": 7}
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
        missing = await c.get("/nowhere")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["x-request-id"]
        assert 'service="scaffold-test"' in (await c.get("/metrics")).text
    assert seen == ["start, http open: True", "stop, http open: True"]
    assert built[0].http.is_closed


async def test_readiness_names_the_dependency_that_is_down(tmp_path: Path) -> None:
    app = _app(tmp_path, f"redis://127.0.0.1:{free_port()}/0", [], [])
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c,
    ):
        ready = await c.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
