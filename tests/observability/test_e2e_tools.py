"""Against the real tools: both services as processes, a real Prometheus scraping
them with the shipped config and rules, and an OTLP receiver collecting their spans.

One module-scoped set-up (process starts dominate the cost): the services
export OTLP to the receiver, Prometheus scrapes them every second.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, new_user
from tests.e2e.processes import Pair
from tests.observability.otlp_receiver import OtlpReceiver
from tests.observability.prometheus_proc import prometheus_config, start_prometheus
from tests.observability.queries import (
    alert_rules,
    alert_signals,
    dashboard_queries,
    gateway_metric_names,
)

pytestmark = pytest.mark.e2e

_SERVER, _CLIENT = 2, 3  # opentelemetry.proto Span.SpanKind


@dataclass
class Stack:
    pair: Pair
    otlp: OtlpReceiver
    prometheus: str  # base URL
    logs: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e-tools")
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    otlp = OtlpReceiver()
    pair = Pair(
        tmp,
        REDIS_URL,
        prefix,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans arrive while the test waits
        OTEL_BLRP_SCHEDULE_DELAY="100",
        TRACING_SQL_MIN_MS="0",  # every statement: the trace below holds both services' SQL
        # Limits on, low enough to trip once, high enough for the rest.
        RATE_LIMIT_ENABLED="true",
        LOGIN_ACCOUNT_LIMIT="3",
        LOGIN_IP_LIMIT="500",
        REGISTER_IP_LIMIT="500",
    )
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        # Generous: on a loaded machine a cold start (imports, key generation,
        # migrations) can take longer than Pair's default.
        pair.auth.start(timeout=120)
        pair.user.start(timeout=120)
        ports = {"auth-service": pair.auth_port, "user-service": pair.user_port}
        prometheus, url = start_prometheus(tmp, prometheus_config(tmp, ports))
        yield Stack(pair, otlp, url, tmp)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=10)
        pair.stop()
        otlp.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _drive(s: Stack) -> dict[str, Any]:
    """The traffic every dashboard panel and alert signal needs to show data."""
    auth, user = s.pair.auth.url, s.pair.user.url
    body, other = new_user(), new_user()
    registered = httpx.post(f"{auth}/users", json=body, timeout=10)
    assert registered.status_code == 201
    assert httpx.post(f"{auth}/users", json=other, timeout=10).status_code == 201
    assert httpx.post(f"{auth}/users", json=body, timeout=10).status_code == 409
    creds = {"email": body["email"], "password": body["password"]}
    tok = httpx.post(f"{auth}/login", json=creds, timeout=10).json()
    httpx.post(f"{auth}/login", json={**creds, "password": "wrong-password-1"}, timeout=10)
    stranger = {"email": f"ghost-{uuid.uuid4().hex[:6]}@example.com", "password": "x" * 12}
    limited = [httpx.post(f"{auth}/login", json=stranger, timeout=10).status_code for _ in range(4)]
    assert limited[-1] == 429
    rotated = httpx.post(
        f"{auth}/token/refresh", json={"refresh_token": tok["refresh_token"]}, timeout=10
    )
    assert rotated.status_code == 200
    fresh = httpx.post(f"{auth}/login", json=creds, timeout=10).json()
    live = {"Authorization": f"Bearer {fresh['access_token']}"}
    uid = registered.json()["id"]
    assert httpx.get(f"{user}/users/{uid}", headers=live, timeout=10).status_code == 200
    assert httpx.get(f"{user}/users", headers=live, timeout=10).status_code == 403
    assert httpx.get(f"{user}/users/me", timeout=10).status_code == 401
    # Reuse: the old token again after its successor was used (within the
    # retry grace, before that, it would get the same successor back).
    successor = rotated.json()["refresh_token"]
    assert (
        httpx.post(
            f"{auth}/token/refresh", json={"refresh_token": successor}, timeout=10
        ).status_code
        == 200
    )
    reuse = httpx.post(
        f"{auth}/token/refresh", json={"refresh_token": tok["refresh_token"]}, timeout=10
    )
    assert reuse.status_code == 401
    httpx.get(f"{user}/no/such/route", timeout=10)
    return {"registered": registered.json(), "request_id": registered.headers["x-request-id"]}


def _query(s: Stack, expr: str) -> list[Any]:
    r = httpx.get(f"{s.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


def test_every_dashboard_and_alert_query_returns_data(stack: Stack) -> None:
    _drive(stack)
    # The gateway's exporter is not in this stack: tests/observability/
    # test_gateway_metrics.py runs those queries against nginx and mtail.
    queries = [
        (where, expr)
        for where, expr in [*dashboard_queries(), *alert_signals()]
        if not gateway_metric_names(expr)
    ]
    assert len(queries) > 20
    # Every full alert expression is valid PromQL to this Prometheus (the
    # result may be empty: nothing is on fire).
    for rule in alert_rules():
        _query(stack, rule["expr"])
    # Rates need two scrapes of a series after its first increment: poll.
    missing = queries
    deadline = time.monotonic() + 30
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = [(where, expr) for where, expr in missing if not _query(stack, expr)]
    assert missing == [], "queries without data:\n" + "\n".join(f"{w}: {e}" for w, e in missing)


def test_prometheus_loaded_every_rule(stack: Stack) -> None:
    groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    expected = {r["alert"] for r in alert_rules()}
    assert set(loaded) == expected
    deadline = time.monotonic() + 10
    while any(h != "ok" for h in loaded.values()) and time.monotonic() < deadline:
        time.sleep(0.5)  # "unknown" until the first evaluation
        groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert set(loaded.values()) == {"ok"}, loaded


def test_a_registration_is_one_trace_across_both_processes(stack: Stack) -> None:
    r = httpx.post(f"{stack.pair.auth.url}/users", json=new_user(), timeout=10)
    assert r.status_code == 201
    uid = r.json()["id"]
    # The audit event of the registration (stdout, here the process log)
    # names its trace...
    lines = [
        json.loads(line)
        for line in (stack.logs / "auth_service.log").read_text().splitlines()
        if line.startswith('{"log":"audit"')
    ]
    (event,) = [e for e in lines if e["event"] == "user.register" and e["user_id"] == uid]
    trace_id = event["trace_id"]

    # ...and that trace holds the spans of both processes.
    trace = _wait_for(lambda: _both_services(stack.otlp.spans, trace_id))
    # The trace's root is the registration. (The user service's first token
    # check fetches the JWKS inside the same trace: another auth SERVER span.)
    ids = {s.span_id for s in trace}
    (root,) = [s for s in trace if s.parent_span_id not in ids]
    assert (root.service, root.kind, root.name) == ("auth-service", _SERVER, "POST /users")
    # Across processes the only carrier is the W3C traceparent header: the
    # user service's SERVER span is the child of the auth service's CLIENT span.
    user_server = next(
        s for s in trace if s.service == "user-service" and s.name == "POST /internal/profiles"
    )
    assert user_server.kind == _SERVER
    parent = next(s for s in trace if s.span_id == user_server.parent_span_id)
    assert (parent.service, parent.kind) == ("auth-service", _CLIENT)
    sql = {s.service for s in trace if s.attributes.get("db.system") == "sqlite"}
    assert sql == {"auth-service", "user-service"}

    # The same event also went out as an OTLP log record, linked to the trace.
    logs = _wait_for(
        lambda: [
            rec
            for rec in stack.otlp.logs
            if rec.event_name == "user.register" and rec.body.get("user_id") == uid
        ]
    )
    assert [(rec.service, rec.trace_id) for rec in logs] == [("auth-service", trace_id)]


def _both_services(spans: list[Any], trace_id: str) -> list[Any]:
    trace = [s for s in list(spans) if s.trace_id == trace_id]
    services = {s.service for s in trace}
    done = any(s.name == "POST /users" for s in trace) and "user-service" in services
    return trace if done else []


def _wait_for(found: Any, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail("timed out waiting for the exported telemetry")
