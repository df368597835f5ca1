"""The gateway is measured: real nginx on the shipped template, mtail on its
metrics log (deploy/mtail/gateway.mtail), a real Prometheus scraping mtail.

What nginx refuses itself (limit_req 429s, a dot-segment path, an oversized
body) never reaches a service, so the services' metrics cannot show it; the
exporter must, from its first request on.
"""

from __future__ import annotations

import http.client
import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.processes import free_port
from tests.observability.prometheus_proc import (
    prometheus_config,
    query,
    start_prometheus,
    stop_prometheus,
)
from tests.observability.queries import (
    alert_signals,
    dashboard_queries,
    gateway_metric_names,
)

pytestmark = pytest.mark.e2e

LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local"


def _cluster() -> ModuleType:
    """deploy/local/cluster.py (deploy/ is not a package): what `make run` uses."""
    spec = importlib.util.spec_from_file_location("_gateway_metrics_cluster", LOCAL / "cluster.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Ok(BaseHTTPRequestHandler):
    """A service stand-in: 200 for everything nginx passes on."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Edge:
    gateway: str
    metrics: str
    prometheus: str


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer:\n{log.read_text()[-2000:]}")


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    cluster = _cluster()
    nginx, mtail = cluster.find_nginx(), cluster.find_mtail()
    # Failures, not skips: .ci/run installs both.
    assert nginx, "nginx is not installed: apt-get install nginx"
    assert mtail, "mtail is not installed: apt-get install mtail"
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up = f"127.0.0.1:{upstream.server_address[1]}"
    port, metrics_port = free_port(), free_port()
    prefix = tmp_path / "nginx"
    metrics_log = tmp_path / "metrics.log"
    cluster.render_gateway_config(
        prefix,
        auth_upstream=up,
        user_upstream=up,
        listen=f"127.0.0.1:{port}",
        metrics_log=metrics_log,
    )
    procs: list[subprocess.Popen[bytes]] = []
    prometheus = None
    try:
        for name, argv in (
            ("nginx", cluster.nginx_command(nginx, prefix)),
            (
                "mtail",
                cluster.mtail_command(mtail, metrics_log, host="127.0.0.1", port=metrics_port),
            ),
        ):
            with (tmp_path / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        gateway, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
        _wait(f"{gateway}/healthz", procs[0], tmp_path / "nginx.log")
        _wait(metrics, procs[1], tmp_path / "mtail.log")
        prometheus, url = start_prometheus(
            tmp_path, prometheus_config(tmp_path, {"gateway": metrics_port})
        )
        yield Edge(gateway, metrics, url)
    finally:
        if prometheus is not None:
            stop_prometheus(prometheus)
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()


def _counters(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=5, trust_env=False).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("gateway_")
    }


def test_what_nginx_refuses_itself_is_counted_from_the_first_burst(edge: Edge) -> None:
    fresh = _counters(edge.metrics)
    for name in ("refused", "rate_limited", "not_routed", "too_large", "requests"):
        assert fresh[(f"gateway_{name}_total", frozenset())] == 0, name
    # Prometheus has the zeros before the attack, as it would in production.
    deadline = time.monotonic() + 20
    while not query(edge.prometheus, 'count_over_time(up{job="gateway"}[1m]) >= 2'):
        assert time.monotonic() < deadline, "Prometheus did not scrape the exporter twice"
        time.sleep(0.5)

    # A login flood past limit_req (10 r/s, burst 20), one dot-segment path,
    # one body over client_max_body_size (64k).
    with httpx.Client(base_url=edge.gateway, trust_env=False) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            logins = list(pool.map(lambda _: client.post("/login").status_code, range(60)))
        too_large = client.post("/users", content=b"x" * (64 * 1024 + 1)).status_code
    host, port = edge.gateway.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/users/../internal/profiles")  # sent verbatim
        dot_segment = connection.getresponse().status
    finally:
        connection.close()
    limited, passed = logins.count(429), logins.count(200)
    assert limited > 0
    assert limited + passed == 60
    assert (too_large, dot_segment) == (413, 404)

    want = {
        ("gateway_rate_limited_total", frozenset()): limited,
        ("gateway_not_routed_total", frozenset()): 1,
        ("gateway_too_large_total", frozenset()): 1,
        ("gateway_refused_total", frozenset()): limited + 2,
        ("gateway_requests_total", frozenset()): 62,
        (
            "gateway_responses_total",
            frozenset({("status", "200"), ("answered_by", "upstream")}),
        ): passed,
        (
            "gateway_responses_total",
            frozenset({("status", "429"), ("answered_by", "gateway")}),
        ): limited,
    }
    deadline = time.monotonic() + 10  # mtail polls the file every 250 ms
    while {k: _counters(edge.metrics).get(k) for k in want} != want:
        assert time.monotonic() < deadline, (_counters(edge.metrics), want)
        time.sleep(0.2)

    # The first burst shows in increase(), and every gateway panel and alert
    # signal has data in a real Prometheus.
    gateway_queries = [
        (where, expr)
        for where, expr in [*dashboard_queries(), *alert_signals()]
        if gateway_metric_names(expr)
    ]
    assert len(gateway_queries) >= 4
    seen = 0.0
    deadline = time.monotonic() + 20
    while seen < limited:
        assert time.monotonic() < deadline, seen
        time.sleep(1)
        result = query(edge.prometheus, "sum(increase(gateway_rate_limited_total[2m]))")
        seen = float(result[0]["value"][1]) if result else 0.0
    missing = [(w, e) for w, e in gateway_queries if not query(edge.prometheus, e)]
    assert missing == []
