"""Prometheus metrics of both services, in process: labels, counters, switches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.middleware.base import BaseHTTPMiddleware

from shared.observability.metrics import ServiceMetrics
from tests.conftest import Services, start_services
from tests.observability.conftest import AuditCapture, account, bearer

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(client: object) -> tuple[str, Samples]:
    r = await client.get("/metrics")  # type: ignore[attr-defined]
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_requests_are_labelled_by_route_template_never_by_path(services: Services) -> None:
    uid, _, tokens = await account(services)
    others = [(await account(services))[0] for _ in range(2)]
    for target in [uid, *others]:
        await services.user.get(f"/users/{target}", headers=bearer(tokens))
    await services.user.get("/no/such/path/8f14e45f")
    await services.user.request("BREW", "/users/me")
    text, samples = await _scrape(services.user)

    assert _value(samples, "idp_http_requests_total", route="/users/{user_id}", status="200") == 1
    assert _value(samples, "idp_http_requests_total", route="/users/{user_id}", status="403") == 2
    assert _value(samples, "idp_http_requests_total", route="<unmatched>", status="404") == 1
    assert _value(samples, "idp_http_requests_total", method="OTHER") == 1
    hist = _value(
        samples, "idp_http_request_duration_seconds_count", route="/users/{user_id}", method="GET"
    )
    assert hist == 3
    for raw in (uid, *others, "8f14e45f", "BREW", "127.0.0.1"):
        assert raw not in text  # no id, path, method or IP ever becomes a label


async def test_security_counters_follow_the_flows(services: Services) -> None:
    uid, body, tokens = await account(services)
    await services.auth.post("/login", json={"email": body["email"], "password": "bad" * 5})
    rotated = await services.auth.post(
        "/token/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200
    rotated = await services.auth.post(
        "/token/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert rotated.status_code == 200
    # The successor was used, so the first token is reuse: that revokes the
    # whole session, and its tokens are refused from now on.
    await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    await services.user.get(f"/users/{uid}", headers=bearer(rotated.json()))
    await services.user.get("/users", headers=bearer(rotated.json()))
    other, _, fresh = await account(services)
    await services.user.get(f"/users/{other}", headers=bearer(fresh))
    await services.user.get("/users", headers=bearer(fresh))
    await services.user.get("/users/me", headers={"Authorization": "Bearer x.y.z"})
    await services.user.get("/users/me")
    _, auth = await _scrape(services.auth)
    _, user = await _scrape(services.user)

    assert _value(auth, "idp_logins_total", result="success") == 2
    assert _value(auth, "idp_logins_total", result="invalid_credentials") == 1
    assert _value(auth, "idp_tokens_issued_total", kind="access") == 4  # 2 logins + 2 refreshes
    assert _value(auth, "idp_tokens_issued_total", kind="refresh") == 4
    assert _value(auth, "idp_tokens_issued_total", kind="service") == 1  # cached for 2 upserts
    assert _value(auth, "idp_refresh_reuse_total") == 1
    assert _value(auth, "idp_audit_events_total", event="user.register", outcome="success") == 2
    assert _value(auth, "idp_registrations_total", result="success") == 2
    assert _value(auth, "idp_mfa_total", result="failure") == 0  # present before any MFA
    assert 0 <= _value(auth, "idp_signing_key_age_seconds") < 600

    assert _value(user, "idp_token_rejections_total", reason="missing") == 1
    assert _value(user, "idp_token_rejections_total", reason="revoked") == 2
    assert _value(user, "idp_token_rejections_total", reason="malformed") == 1
    assert _value(user, "idp_access_denied_total", reason="not_admin") == 1
    assert _value(user, "idp_jwks_refresh_total", outcome="ok") == 1
    assert _value(user, "idp_jwks_refresh_total", outcome="error") == 0
    assert _value(user, "idp_audit_events_dropped_total") == 0
    assert all(ls >= {("service", "user-service")} for (n, ls) in user if n.startswith("idp_"))


async def test_rate_limited_requests_are_counted(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"rate_limit_enabled": True, "login_account_limit": 1},
    ):
        for _ in range(3):
            await s.auth.post("/login", json={"email": "x@example.com", "password": "y" * 12})
        _, samples = await _scrape(s.auth)
    assert _value(samples, "idp_rate_limited_total", limit="login-account") == 2
    assert _value(samples, "idp_logins_total", result="rate_limited") == 2


async def test_instrumentation_is_pure_asgi(services: Services) -> None:
    for app in (services.auth_app, services.user_app):
        for middleware in app.user_middleware:
            assert not issubclass(middleware.cls, BaseHTTPMiddleware), middleware  # type: ignore[arg-type]


@pytest.fixture
async def switched(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Both services with `metrics_enabled`/`tracing_enabled` as the test's parameter says."""
    flags: dict[str, bool] = request.param
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls, auth=flags, user=flags
    ):
        yield s


OFF = {"metrics_enabled": False, "tracing_enabled": False}
METRICS_ONLY = {"metrics_enabled": True, "tracing_enabled": False}


@pytest.mark.parametrize("switched", [OFF], indirect=True)
async def test_metrics_and_tracing_switch_off(switched: Services, audit: AuditCapture) -> None:
    s = switched
    assert (await s.auth.get("/metrics")).status_code == 404
    assert (await s.user.get("/metrics")).status_code == 404
    uid, _, tokens = await account(s)
    assert (await s.user.get(f"/users/{uid}", headers=bearer(tokens))).status_code == 200
    # Audit events are never switched off; without tracing they carry no trace id.
    assert [e["event"] for e in audit.events] == ["user.register", "login"]
    assert all(e["trace_id"] is None for e in audit.events)
    assert s.auth_app.state.obs.tracing is None
    assert s.auth_app.state.obs.metrics is None


def test_audit_events_map_to_security_counters() -> None:
    """The mapping itself, including the passkey flows' events (WebAuthn)."""
    from shared.observability.metrics import ServiceMetrics

    m = ServiceMetrics("auth-service")
    m.initialise(issuer=True)
    for event, outcome, reason, extra in [
        ("login", "success", None, {}),
        ("login", "failure", "invalid_credentials", {}),
        ("mfa.challenge", "success", None, {}),
        ("mfa.verify", "success", None, {}),
        ("mfa.verify", "failure", "bad_signature", {}),
        ("passkey.login", "success", None, {}),
        ("passkey.login", "failure", "unknown_credential", {}),
        ("rate_limited", "denied", "login-ip", {"action": "login"}),
        ("rate_limited", "denied", "register-ip", {"action": "register"}),
        ("token.rejected", "failure", "Weird Reason; DROP", {}),  # unsafe -> "other"
        ("passkey.added", "success", None, {}),
        ("user.register", "failure", "duplicate", {}),
    ]:
        m.observe_audit({"event": event, "outcome": outcome, "reason": reason, **extra})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in m.registry.collect()
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted({"service": "auth-service", **labels}.items())))
        return samples.get(key, 0.0)

    assert value("idp_logins_total", result="success") == 2
    assert value("idp_logins_total", result="invalid_credentials") == 1
    assert value("idp_logins_total", result="mfa_required") == 1
    assert value("idp_logins_total", result="passkey_failure") == 1
    assert value("idp_logins_total", result="rate_limited") == 1
    assert value("idp_mfa_total", result="success") == 1
    assert value("idp_mfa_total", result="failure") == 1
    assert value("idp_tokens_issued_total", kind="refresh") == 3  # login, mfa, passkey
    assert value("idp_rate_limited_total", limit="login-ip") == 1
    assert value("idp_rate_limited_total", limit="register-ip") == 1
    assert value("idp_token_rejections_total", reason="other") == 1
    assert value("idp_audit_events_total", event="passkey.added", outcome="success") == 1
    assert value("idp_registrations_total", result="duplicate") == 1
    assert value("idp_registrations_total", result="rate_limited") == 1


async def test_probes_are_counted_though_never_traced(services: Services) -> None:
    # With tracing on, the span middleware records the metrics: the paths it
    # gives no span must still be counted, once.
    assert (await services.user.get("/healthz")).status_code == 200
    _, samples = await _scrape(services.user)
    assert _value(samples, "idp_http_requests_total", route="/healthz", status="200") == 1


@pytest.mark.parametrize("switched", [METRICS_ONLY], indirect=True)
async def test_metrics_without_tracing_count_each_request_once(switched: Services) -> None:
    s = switched
    uid, _, tokens = await account(s)
    await s.user.get(f"/users/{uid}", headers=bearer(tokens))
    await s.user.get("/healthz")
    _, samples = await _scrape(s.user)
    assert _value(samples, "idp_http_requests_total", route="/users/{user_id}", status="200") == 1
    assert _value(samples, "idp_http_requests_total", route="/healthz", status="200") == 1
    hist = _value(samples, "idp_http_request_duration_seconds_count", route="/users/{user_id}")
    assert hist == 1


def test_request_observations_match_the_client_librarys_own() -> None:
    # observe_request reuses cached label children: the samples must be
    # exactly what Counter.inc and Histogram.observe produce,
    # bucket boundaries included (a value equal to a bound is in that bucket).
    fast, reference = ServiceMetrics("svc"), ServiceMetrics("svc")
    durations = [0.0, 0.005, 0.0050001, 0.3, 2.5, 10.0, 10.5, 1e9]
    for i, seconds in enumerate(durations):
        status = 200 if i % 3 else 404
        fast.observe_request("GET", "/users/{user_id}", status, seconds)
        reference.requests.labels("svc", "GET", "/users/{user_id}", str(status)).inc()
        reference.latency.labels("svc", "GET", "/users/{user_id}").observe(seconds)

    def samples(m: ServiceMetrics) -> Samples:
        out: Samples = {}
        for family in text_string_to_metric_families(m.render().decode()):
            for s in family.samples:
                if family.name.startswith("idp_http") and not s.name.endswith("_created"):
                    out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    got = samples(fast)
    assert got == samples(reference)
    assert _value(got, "idp_http_request_duration_seconds_bucket", le="0.005") == 2
    assert _value(got, "idp_http_requests_total", status="404") == 3


def _present(samples: Samples, name: str, **labels: str) -> list[float]:
    want = set(labels.items())
    return [v for (n, ls), v in samples.items() if n == name and want <= ls]


async def test_every_series_a_panel_or_alert_reads_exists_at_zero_on_a_fresh_app(
    services: Services,
) -> None:
    # Prometheus's first sample of a series created by its first event
    # already holds that event, so increase() would never show it: the first
    # attack on a fresh process must find its series there at 0.
    from shared.observability.metrics import (
        AUDIT_EVENTS_ANY,
        AUDIT_EVENTS_ISSUER,
        AUDIT_EVENTS_RESOURCE,
        RATE_LIMITS,
    )

    _, auth = await _scrape(services.auth)
    _, user = await _scrape(services.user)

    for event in (*AUDIT_EVENTS_ISSUER, *AUDIT_EVENTS_ANY):
        for outcome in ("success", "failure", "denied"):
            assert _present(auth, "idp_audit_events_total", event=event, outcome=outcome) == [0]
    for event in AUDIT_EVENTS_ANY:
        assert _present(user, "idp_audit_events_total", event=event, outcome="failure") == [0]
    for event in AUDIT_EVENTS_RESOURCE:
        for outcome in ("success", "failure"):
            assert _present(user, "idp_audit_events_total", event=event, outcome=outcome) == [0]
    for limit in RATE_LIMITS:
        assert _present(auth, "idp_rate_limited_total", limit=limit) == [0], limit
    for samples, method, route, status in [
        (auth, "POST", "/users", "201"),
        (auth, "POST", "/users", "409"),
        (auth, "POST", "/login", "401"),
        (auth, "POST", "/login", "429"),
        (auth, "POST", "/token", "400"),
        (auth, "POST", "/token/refresh", "401"),
        (auth, "POST", "/login", "413"),
        (auth, "GET", "/readyz", "503"),
        (user, "GET", "/users/{user_id}", "403"),
        (user, "GET", "/users/me", "401"),
        (user, "GET", "<unmatched>", "404"),
        (user, "OTHER", "<unmatched>", "404"),
        (user, "POST", "/internal/profiles", "500"),
    ]:
        labels = {"method": method, "route": route, "status": status}
        assert _present(samples, "idp_http_requests_total", **labels) == [0], labels
        count = "idp_http_request_duration_seconds_count"
        assert _present(samples, count, method=method, route=route) == [0], labels


def test_known_label_values_cover_what_the_code_emits() -> None:
    # The lists of events and limits are written by hand: a new event or
    # limit in the code must be added there too, or its first burst is lost.
    import re

    from shared.observability.metrics import (
        AUDIT_EVENTS_ANY,
        AUDIT_EVENTS_ISSUER,
        AUDIT_EVENTS_RESOURCE,
        RATE_LIMITS,
    )

    root = Path(__file__).resolve().parents[2]
    code = "\n".join(
        p.read_text()
        for d in ("auth_service", "user_service", "shared")
        for p in (root / d).rglob("*.py")
        if "migrations" not in p.parts and p.name not in ("admin.py", "keys.py")
    )
    limits = set(re.findall(r'\bLimit\(\s*"([a-z0-9-]+)"', code))
    events = set(
        re.findall(
            r'\b(?:audit_event|audited|audited_failure|validation_audited_route)\(\s*"([a-z_.]+)"',
            code,
        )
    )
    assert limits == set(RATE_LIMITS)
    assert "login" in events
    assert events <= set(AUDIT_EVENTS_ISSUER) | set(AUDIT_EVENTS_ANY) | set(AUDIT_EVENTS_RESOURCE)
