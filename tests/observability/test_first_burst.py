"""The first burst on a fresh process shows in `increase()` (a real Prometheus).

A series created by its first event has that event in Prometheus's first
sample of it, so `rate()`/`increase()` read 0 for exactly the first attack
on each process. The services create every series a panel or alert reads
at 0 on start-up; this checks that with the real thing: both services as
processes, Prometheus scraping them every second, a burst of sign-ups and
wrong passwords, and the issue's own queries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, new_user
from tests.e2e.processes import Pair
from tests.observability.prometheus_proc import (
    prometheus_config,
    query,
    start_prometheus,
    stop_prometheus,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[Pair, str]]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    pair = Pair(
        tmp_path,
        REDIS_URL,
        prefix,
        TRACING_ENABLED="false",
        RATE_LIMIT_ENABLED="true",
        LOGIN_ACCOUNT_LIMIT="10",
        LOGIN_ACCOUNT_NETWORK_LIMIT="100",
        LOGIN_IP_LIMIT="500",
        REGISTER_IP_LIMIT="500",
    )
    prometheus = None
    try:
        pair.auth.start(timeout=120)
        pair.user.start(timeout=120)
        ports = {"auth-service": pair.auth_port, "user-service": pair.user_port}
        prometheus, url = start_prometheus(
            tmp_path, prometheus_config(tmp_path, ports, rules=False)
        )
        yield pair, url
    finally:
        if prometheus is not None:
            stop_prometheus(prometheus)
        pair.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def _scalar(url: str, expr: str) -> float:
    result = query(url, expr)
    return float(result[0]["value"][1]) if result else 0.0


def test_the_first_burst_on_a_fresh_process_shows_in_increase(
    scraped: tuple[Pair, str],
) -> None:
    pair, url = scraped
    auth = f"http://127.0.0.1:{pair.auth_port}"
    # The processes are up and scraped before the attack, as in production.
    deadline = time.monotonic() + 30
    while _scalar(url, 'min(count_over_time(up{job=~"auth-service|user-service"}[1m]))') < 2:
        assert time.monotonic() < deadline, "Prometheus did not scrape both services twice"
        time.sleep(0.5)

    # The burst: 3 sign-ups, 16 wrong passwords against one account.
    bodies = [new_user() for _ in range(3)]
    for body in bodies:
        assert httpx.post(f"{auth}/users", json=body, timeout=30).status_code == 201
    answers = [
        httpx.post(
            f"{auth}/login",
            json={"email": bodies[0]["email"], "password": "wrong password guess"},
            timeout=30,
        ).status_code
        for _ in range(16)
    ]
    refused = answers.count(429)
    assert refused == 6, answers

    registered = (
        'sum(increase(idp_audit_events_total{event="user.register",outcome="success"}[2m]))'
    )
    limited = "sum(increase(idp_rate_limited_total[2m]))"
    statuses = 'sum(increase(idp_http_requests_total{route="/login",status="429"}[2m]))'
    deadline = time.monotonic() + 20
    while (seen := [_scalar(url, q) for q in (registered, limited, statuses)]) and min(seen) == 0:
        assert time.monotonic() < deadline, seen
        time.sleep(1)
    time.sleep(2)  # a few more scrapes: the whole burst is in
    seen = [_scalar(url, q) for q in (registered, limited, statuses)]
    # increase() extrapolates a little past the samples; never below the truth.
    assert 3 <= seen[0] < 4.5, seen
    assert refused <= seen[1] < refused * 1.5, seen
    assert refused <= seen[2] < refused * 1.5, seen
