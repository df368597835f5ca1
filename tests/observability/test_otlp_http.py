"""OTLP/HTTP export honours the environment an operator sets for any HTTP client.

The exporters are the SDK's own (requests underneath), so a proxy named in
`HTTP_PROXY`/`HTTPS_PROXY`, a `NO_PROXY` exception and netrc credentials for
the collector apply to spans and audit logs as to any other requests client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.audit.events import audit_event
from shared.audit.sink import attach, detach
from shared.observability.otlp_audit import OtlpAuditLogs
from shared.observability.tracing import Tracing
from tests.observability.otlp_receiver import OtlpReceiver

ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NETRC",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine's


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _export_one_span(endpoint: str) -> None:
    tracing = Tracing(service_name="proxy-test", version="1", otlp_endpoint=endpoint)
    with tracing.provider.get_tracer("t").start_as_current_span("op"):
        pass
    assert tracing.provider.force_flush(5_000)
    tracing.shutdown()


def test_spans_reach_the_collector_through_the_proxy_the_environment_names(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", receiver.endpoint)  # the receiver plays the proxy
    _export_one_span("http://collector.example:4318")
    # A forward proxy is asked for the absolute URL of the collector.
    assert receiver.targets == ["http://collector.example:4318/v1/traces"]
    assert [s.name for s in receiver.spans] == ["op"]


def test_a_proxy_named_after_start_up_is_used_too(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests reads the environment on each export, as for any client.
    tracing = Tracing(
        service_name="proxy-test", version="1", otlp_endpoint="http://collector.example:4318"
    )
    monkeypatch.setenv("HTTP_PROXY", receiver.endpoint)
    with tracing.provider.get_tracer("t").start_as_current_span("late"):
        pass
    assert tracing.provider.force_flush(5_000)
    tracing.shutdown()
    assert [s.name for s in receiver.spans] == ["late"]


def test_no_proxy_sends_spans_straight_to_the_collector(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _export_one_span(receiver.endpoint)
    assert receiver.targets == ["/v1/traces"]  # origin-form: no proxy in between
    assert [s.name for s in receiver.spans] == ["op"]


def test_netrc_credentials_for_the_collector_are_sent(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login exporter password not-a-real-one\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    _export_one_span(receiver.endpoint)
    (authorization,) = receiver.authorizations
    assert authorization is not None
    assert authorization.startswith("Basic ")


def test_audit_logs_reach_the_collector_through_the_proxy_too(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", receiver.endpoint)
    logs = OtlpAuditLogs(service_name="proxy-test", endpoint="http://collector.example:4318")
    attach(logs.handler)
    try:
        audit_event("login", outcome="success", service="proxy-test")
    finally:
        detach(logs.handler)
    logs.shutdown()  # flushes
    deadline = time.monotonic() + 5
    while not receiver.logs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.targets == ["http://collector.example:4318/v1/logs"]
    assert [r.event_name for r in receiver.logs] == ["login"]
