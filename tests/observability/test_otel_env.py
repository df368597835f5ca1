"""The OpenTelemetry environment variables an operator expects to work, do.

The server spans come from the project's own middleware (why:
bench/README.md, "Server spans"), so these are the variables the SDK and
`opentelemetry-instrumentation-fastapi` would honour, checked end to end:
spans (or none) at a real OTLP/HTTP receiver, attributes as named by the
semantic-convention opt-in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.http.middleware import RequestContextMiddleware
from shared.observability.setup import Observability
from shared.observability.tracing import Tracing
from shared.runtime.settings import CommonSettings
from tests.observability.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.anyio

ENV = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
    "HTTP_PROXY",
    "http_proxy",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def _app() -> FastAPI:
    app = FastAPI(version="1")

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    return app


async def _get(app: FastAPI, path: str = "/items/7") -> None:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        r = await client.get(path, headers={"user-agent": "env-test/1"})
        assert r.status_code == 200


async def _one_request_exported(tracing: Tracing) -> None:
    app = _app()
    tracing.instrument_app(app)
    await _get(app)
    assert tracing.provider.force_flush(5_000)
    tracing.shutdown()


async def test_spans_arrive_without_any_variable_set_beyond_the_endpoint(
    receiver: OtlpReceiver,
) -> None:
    # The baseline the tests below change one variable of.
    await _one_request_exported(
        Tracing(service_name="t", version="1", otlp_endpoint=receiver.endpoint)
    )
    assert [s.name for s in receiver.spans] == ["GET /items/{item_id}"]


async def test_otel_sdk_disabled_turns_tracing_off(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = CommonSettings(otel_exporter_otlp_endpoint=receiver.endpoint)
    obs = Observability(service_name="t", settings=settings, issuer=False)
    app = _app()
    obs.instrument_app(app)
    await _get(app)
    assert obs.tracing is None
    assert receiver.targets == []


async def test_traces_exporter_none_exports_nothing(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    tracing = Tracing(service_name="t", version="1", otlp_endpoint=receiver.endpoint)
    assert not tracing.exporting
    await _one_request_exported(tracing)
    assert receiver.targets == []


async def test_the_traces_endpoint_is_used_as_given(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The signal's own endpoint is a full URL (no /v1/traces appended), and
    # it wins over the base endpoint (here one where nothing listens).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.endpoint}/v1/traces")
    tracing = Tracing(service_name="t", version="1", otlp_endpoint="http://127.0.0.1:9")
    await _one_request_exported(tracing)
    assert receiver.targets == ["/v1/traces"]
    assert [s.name for s in receiver.spans] == ["GET /items/{item_id}"]


async def test_the_traces_endpoint_alone_turns_export_on(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.endpoint}/v1/traces")
    tracing = Tracing(service_name="t", version="1")
    assert tracing.exporting
    await _one_request_exported(tracing)
    assert [s.name for s in receiver.spans] == ["GET /items/{item_id}"]


OLD = {
    "http.method": "GET",
    "http.target": "/items/7",
    "http.route": "/items/{item_id}",
    "http.status_code": 200,
    "http.user_agent": "env-test/1",
    "net.peer.ip": "198.51.100.7",
}
NEW = {
    "http.request.method": "GET",
    "url.path": "/items/7",
    "http.route": "/items/{item_id}",
    "http.response.status_code": 200,
    "user_agent.original": "env-test/1",
    "client.address": "198.51.100.7",
}


def _recorded_app(
    opt_in: str | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[FastAPI, Tracing, InMemorySpanExporter]:
    """The test app and a tracing that keeps its spans, under `opt_in` (not yet instrumented)."""
    if opt_in is not None:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    tracing = Tracing(service_name="t", version="1")
    exporter = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(exporter))
    return _app(), tracing, exporter


@pytest.mark.parametrize(
    ("opt_in", "expected"),
    [
        (None, OLD),
        ("http", NEW),
        ("database, http/dup", {**OLD, **NEW}),
        ("something-else", OLD),
    ],
)
async def test_semconv_stability_opt_in_names_the_attributes(
    opt_in: str | None, expected: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, tracing, exporter = _recorded_app(opt_in, monkeypatch)
    tracing.instrument_app(app)
    await _get(app)
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == expected
    tracing.shutdown()


GATEWAY = "10.0.0.2"
CLIENT = "198.51.100.7"


@pytest.mark.parametrize(
    ("opt_in", "peer", "forwarded_for", "expected"),
    [
        # Through the trusted gateway: the client it saw, and the gateway.
        (None, GATEWAY, CLIENT, {"net.peer.ip": GATEWAY, "http.client_ip": CLIENT}),
        ("http", GATEWAY, CLIENT, {"client.address": CLIENT, "network.peer.address": GATEWAY}),
        (
            "http/dup",
            GATEWAY,
            CLIENT,
            {
                "net.peer.ip": GATEWAY,
                "http.client_ip": CLIENT,
                "client.address": CLIENT,
                "network.peer.address": GATEWAY,
            },
        ),
        # A peer that is not a trusted proxy writes what it likes into
        # X-Forwarded-For: it is not believed, and nothing is added.
        (None, "203.0.113.9", CLIENT, {"net.peer.ip": "203.0.113.9"}),
        ("http", "203.0.113.9", CLIENT, {"client.address": "203.0.113.9"}),
        # Straight from the client: one address, one attribute.
        (None, CLIENT, None, {"net.peer.ip": CLIENT}),
    ],
)
async def test_behind_a_trusted_proxy_the_span_names_the_client_and_the_proxy(
    opt_in: str | None,
    peer: str,
    forwarded_for: str | None,
    expected: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, tracing, exporter = _recorded_app(opt_in, monkeypatch)
    # As the services stack them: the request context (which believes
    # X-Forwarded-For from TRUSTED_PROXIES only) inside the server span.
    app.add_middleware(
        RequestContextMiddleware,
        trusted_proxies=(ipaddress.ip_network(f"{GATEWAY}/32"),),
        max_body_bytes=1024,
    )
    tracing.instrument_app(app)
    transport = httpx.ASGITransport(app=app, client=(peer, 4242))
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/items/7", headers=headers)).status_code == 200
    (span,) = exporter.get_finished_spans()
    addresses = {
        k: v
        for k, v in (span.attributes or {}).items()
        if k in {"net.peer.ip", "http.client_ip", "client.address", "network.peer.address"}
    }
    assert addresses == expected
    tracing.shutdown()
