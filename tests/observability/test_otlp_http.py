"""`shared.otlp_http`: exporter sessions that read the environment once decide as requests does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shared.otlp_http import pinned_session
from shared.tracing import Tracing
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
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine's


def _decided(session: requests.Session, url: str, certificate: bool | str) -> tuple[object, ...]:
    """What a POST to `url` would use: proxies, TLS verification, Authorization."""
    session.verify = certificate  # as the exporter's transport sets it
    settings = session.merge_environment_settings(url, {}, None, None, None)
    prepared = session.prepare_request(requests.Request("POST", url, data=b"x"))
    return settings["proxies"], settings["verify"], prepared.headers.get("Authorization")


CASES = {
    "nothing set": {},
    "http proxy": {"HTTP_PROXY": "http://proxy.internal:3128"},
    "https proxy, lower case": {"https_proxy": "http://proxy.internal:3128"},
    "proxy bypassed for the collector": {
        "HTTPS_PROXY": "http://proxy.internal:3128",
        "HTTP_PROXY": "http://proxy.internal:3128",
        "NO_PROXY": "localhost,collector.observability.svc",
    },
    "CA bundle": {"REQUESTS_CA_BUNDLE": "/etc/ssl/corp-ca.pem"},
    "cURL CA bundle": {"CURL_CA_BUNDLE": "/etc/ssl/curl-ca.pem"},
}
URLS = (
    "http://collector.observability.svc:4318/v1/traces",
    "https://otlp.example.com/v1/logs",
)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("certificate", [True, "/etc/otel/collector-ca.pem"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_pinned_session_decides_what_requests_decides_per_request(
    case: str, certificate: bool | str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CASES[case].items():
        monkeypatch.setenv(name, value)
    ours = pinned_session(url, "traces")
    assert ours is not None
    assert ours.trust_env is False  # nothing is read per request
    assert _decided(ours, url, certificate) == _decided(requests.Session(), url, certificate)


def test_netrc_credentials_for_the_collector_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine otlp.example.com login exporter password not-a-real-one\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    url = URLS[1]
    ours = pinned_session(url, "logs")
    assert ours is not None
    auth = _decided(ours, url, True)[2]
    assert isinstance(auth, str)
    assert auth.startswith("Basic ")
    assert auth == _decided(requests.Session(), url, True)[2]


@pytest.mark.parametrize(
    ("variable", "signal", "own_session"),
    [
        ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "traces", True),
        ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", "traces", True),
        ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER", "logs", True),
        # Another signal's provider is not this exporter's.
        ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER", "traces", False),
    ],
)
def test_a_configured_credential_provider_keeps_its_own_session(
    variable: str, signal: str, own_session: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "corp-sso")
    # None: the exporter loads the provider's session itself, as without us.
    assert (pinned_session(URLS[0], signal) is None) is own_session


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


def test_no_proxy_sends_spans_straight_to_the_collector(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _export_one_span(receiver.endpoint)
    assert receiver.targets == ["/v1/traces"]  # origin-form: no proxy in between
    assert [s.name for s in receiver.spans] == ["op"]
