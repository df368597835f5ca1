"""Metrics stay correct with several worker processes (PROMETHEUS_MULTIPROC_DIR).

Without the multiprocess collector each worker would answer a scrape with
its own counts only, and the totals would jump between scrapes depending on
which worker answered.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL
from tests.e2e.processes import ROOT, free_port

pytestmark = pytest.mark.e2e

_REQUESTS = 60


@pytest.fixture
def two_workers(tmp_path: Path, redis_prefix: str) -> Iterator[tuple[str, Path]]:
    metrics_dir = tmp_path / "prometheus-multiproc"
    metrics_dir.mkdir()  # must exist and start empty (an emptyDir volume in k8s)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ENV": "test",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/user.db",
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
        "JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "TRACING_ENABLED": "false",
    }
    # Migrate once first (here, no extra process start): two workers
    # starting together would both try.
    asyncio.run(_migrate(env["DATABASE_URL"]))
    with (tmp_path / "user.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "user_service.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a cold start on a loaded machine is slow
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:  # both workers are up
            assert proc.poll() is None, (tmp_path / "user.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.2)
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.2)
        yield url, metrics_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _migrate(url: str) -> None:
    from shared.db.engine import make_engine
    from shared.db.migrations import prepare_schema
    from user_service.migrate import MIGRATIONS

    engine = make_engine(url)
    try:
        await prepare_schema(engine, MIGRATIONS, production=False)
    finally:
        await engine.dispose()


def _healthz_total(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "idp_http_requests_total" and s.labels.get("route") == "/healthz"
    )


def test_series_exist_at_zero_before_any_event_across_workers(
    two_workers: tuple[str, Path],
) -> None:
    # Created at start-up in each worker's file, so the aggregated scrape
    # shows them at 0 and the first burst shows in increase().
    url, _ = two_workers
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
        for s in family.samples
    }
    service = ("service", "user-service")
    for name, labels in [
        ("idp_audit_events_total", {("event", "token.rejected"), ("outcome", "failure")}),
        ("idp_audit_events_total", {("event", "access.denied"), ("outcome", "denied")}),
        (
            "idp_http_requests_total",
            {("method", "GET"), ("route", "/users/{user_id}"), ("status", "403")},
        ),
        (
            "idp_http_requests_total",
            {("method", "GET"), ("route", "<unmatched>"), ("status", "404")},
        ),
    ]:
        key = (name, frozenset({service, *labels}))
        assert samples.get(key) == 0, key


def test_counts_add_up_across_workers(two_workers: tuple[str, Path]) -> None:
    url, metrics_dir = two_workers

    def hit(_: int) -> int:
        # A new connection per request, so the kernel hands them to either worker.
        return httpx.get(f"{url}/healthz", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(hit, range(_REQUESTS))) == {200}

    # Every scrape, whichever worker answers it, reports the total of both.
    totals = {_healthz_total(httpx.get(f"{url}/metrics", timeout=10).text) for _ in range(6)}
    assert totals == {_REQUESTS}

    per_worker = {}
    for path in metrics_dir.glob("counter_*.db"):
        per_worker[path.name] = sum(
            value
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
            if "idp_http_requests" in key and '"/healthz"' in key
        )
    assert len(per_worker) == 2
    assert sum(per_worker.values()) == _REQUESTS
