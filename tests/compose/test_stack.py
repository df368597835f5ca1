"""`docker compose up` on a fresh checkout: the stack a new user gets, used as
they would use it (tests/compose/conftest.py starts it).

The tests run in file order on one stack; the restart test comes last.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    Authenticators,
    PasskeyPage,
)
from tests.compose.conftest import Stack
from tests.e2e.processes import ROOT
from tests.e2e.rest_client import Runner, parse

pytestmark = pytest.mark.compose

PASSWORD = "Str0ngP@ssw0rd!!"


def register(stack: Stack, email: str) -> None:
    r = httpx.post(
        f"{stack.base_url}/users",
        json={
            "name": "Compose Test",
            "email": email,
            "date_of_birth": "1980-04-14T10:00:00Z",
            "job_title": "Engineer",
            "password": PASSWORD,
        },
        timeout=20,
    )
    assert r.status_code == 201, r.text


def login(stack: Stack, email: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/login", json={"email": email, "password": PASSWORD}, timeout=20
    )


def test_api_http_walks_every_endpoint_through_the_stack(stack: Stack) -> None:
    variables, requests = parse((ROOT / "api.http").read_text())
    variables["base"] = stack.base_url
    # The application the file's OAuth client requests need, registered as
    # the README says for the stack: the CLI inside the auth container, through
    # its entrypoint (which reads DATABASE_URL from the secrets volume).
    made = stack.compose(
        "exec", "-T", "auth", "idp-entrypoint", "python", "-m", "auth_service.clients", "create",
        "--name", "Reports", "--grant", "client_credentials",
        "--audience", "reports", "--scope", "reports:read",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    app = json.loads(made.stdout)
    variables["clientId"], variables["clientSecret"] = app["client_id"], app["client_secret"]
    with httpx.Client(timeout=20) as client:
        runner = Runner(variables, client)
        for req in requests:
            resp = runner.send(req)
            assert resp.status_code < 500, (req.title, resp.status_code, resp.text)
            if req.expect:
                assert resp.status_code in req.expect, (req.title, resp.status_code, resp.text)
        assert runner.responses["register"].status_code == 201
        # Routed by the gateway to the user service, which answers for itself.
        assert runner.send(requests[0]).status_code == 409


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_passkey_ceremony_on_localhost(stack: Stack, browser: Browser) -> None:
    """The stack's defaults (RP ID localhost, origin http://localhost:PORT)
    let a browser register a passkey and log in with it alone."""
    context = browser.new_context(base_url=stack.base_url)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    ui = PasskeyPage(page, Authenticators(context.new_cdp_session(page)))
    try:
        email = f"compose-{uuid.uuid4().hex[:10]}@example.com"
        ui.open()
        ui.register(email, PASSWORD)
        ui.password_login(email, PASSWORD)
        ui.expect_status("Logged in with your password")
        ui.add_passkey("Laptop")
        ui.expect_status('Passkey "Laptop" added')
        assert len(ui.authn.credentials()) == 1
        ui.logout()
        ui.page.get_by_role("button", name="Log in with a passkey").click()
        ui.expect_status("Logged in with your passkey")
        assert ui.amr() == "hwk, user"
    finally:
        context.close()
    assert not [m for m in ui.console if m.startswith("pageerror")], ui.console


def test_prometheus_scrapes_both_services(stack: Stack) -> None:
    def both_up() -> bool:
        r = httpx.get(f"{stack.prometheus_url}/api/v1/targets", timeout=5)
        targets = r.json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        # Both services, and the gateway through its exporter (deploy/mtail).
        return health == {"auth-service": "up", "user-service": "up", "gateway": "up"}

    stack.wait_until("Prometheus scraping auth-service and user-service", both_up, 90)
    # And what it scraped is the services' own metrics.
    r = httpx.get(
        f"{stack.prometheus_url}/api/v1/query",
        params={"query": "count by (job) (up{job=~'auth-service|user-service'} == 1)"},
        timeout=5,
    )
    jobs = {s["metric"]["job"] for s in r.json()["data"]["result"]}
    assert jobs == {"auth-service", "user-service"}


def test_grafana_answers_with_the_dashboards_provisioned(stack: Stack) -> None:
    if not stack.has_grafana:
        # Not a missing feature of the stack: this machine cannot have the
        # image (docs/OPERATIONS.md, "Images without a registry").
        # tests/observability/test_deploy_assets.py checks the provisioning.
        pytest.skip("grafana/grafana:11.5.2 is not available without a registry")
    password = stack.compose("exec", "-T", "grafana", "cat", "/run/secrets/grafana_admin_password")
    assert password.returncode == 0, password.stderr
    auth = ("admin", password.stdout.strip())

    def healthy() -> bool:
        return httpx.get(f"{stack.grafana_url}/api/health", timeout=5).status_code == 200

    stack.wait_until("Grafana", healthy, 90)
    r = httpx.get(f"{stack.grafana_url}/api/search", params={"type": "dash-db"}, auth=auth)
    assert r.status_code == 200, r.text
    assert len(r.json()) >= 2


def test_production_override_refuses_unsafe_settings(stack: Stack) -> None:
    files = (*stack.files, "deploy/compose/production.yml")
    # Without the deployment's own settings there is nothing to start.
    missing = stack.compose("config", "-q", files=files)
    assert missing.returncode != 0
    assert "ISSUER" in missing.stderr
    # With unsafe ones, the services refuse before touching anything.
    unsafe = {
        "ISSUER": "http://idp.example.com",
        "WEBAUTHN_RP_ID": "idp.example.com",
        "WEBAUTHN_ORIGINS": "https://idp.example.com",
    }
    run = stack.compose("run", "--rm", "--no-deps", "auth-migrate", files=files, env=unsafe)
    assert run.returncode != 0
    assert "ISSUER must be an https URL" in run.stdout + run.stderr
    # With real ones, the same step runs against the stack's database.
    safe = {**unsafe, "ISSUER": "https://idp.example.com"}
    run = stack.compose("run", "--rm", "--no-deps", "auth-migrate", files=files, env=safe)
    assert run.returncode == 0, run.stdout + run.stderr


def test_data_survives_a_restart(stack: Stack) -> None:
    email = f"restart-{uuid.uuid4().hex[:10]}@example.com"
    register(stack, email)
    tokens = login(stack, email)
    assert tokens.status_code == 200, tokens.text
    refresh = tokens.json()["refresh_token"]
    access = tokens.json()["access_token"]

    stop = stack.compose("stop", "--timeout", "20")
    assert stop.returncode == 0, stop.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stack.base_url}/healthz", timeout=2)
    started = time.monotonic()
    stack.up()
    stack.wait_for_gateway()
    assert time.monotonic() - started < 240

    # The account (PostgreSQL), the session (Redis AOF) and the signing key
    # (the secrets volume: the access token signed before still verifies).
    again = login(stack, email)
    assert again.status_code == 200, again.text
    me = httpx.get(
        f"{stack.base_url}/users/me", headers={"Authorization": f"Bearer {access}"}, timeout=20
    )
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    r = httpx.post(f"{stack.base_url}/token/refresh", json={"refresh_token": refresh}, timeout=20)
    assert r.status_code == 200, r.text
