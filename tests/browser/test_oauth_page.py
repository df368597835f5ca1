"""Signing in to another application through the page, in Chromium, against
`make run`'s cluster: the client is registered with the operator CLI, Authlib
is the relying party (PKCE S256, ID token checked with joserfc), and the
login happens on the page as a person would do it.

The application's redirect URI is never served: Playwright intercepts the
browser's navigation to it and hands the URL (code, state, iss) to Authlib.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet
from playwright.sync_api import Route, expect

from tests.browser.conftest import PASSWORD, ROOT, Cluster, PasskeyPage, new_email

pytestmark = pytest.mark.browser

# Nothing listens here: the browser's navigation is intercepted.
REDIRECT = "http://127.0.0.1:23457/callback"


def _create_client(cluster: Cluster, *extra: str) -> dict[str, str]:
    """`python -m auth_service.clients create` against the cluster's database."""
    assert cluster.data_dir is not None
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{cluster.data_dir}/auth.db"}
    env.pop("ENV", None)
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "auth_service.clients",
            "create",
            "--name",
            "Reports",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--redirect-uri",
            REDIRECT,
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    client: dict[str, str] = json.loads(made.stdout)
    return client


def _register(cluster: Cluster, email: str) -> str:
    r = httpx.post(
        f"{cluster.base_url}/users",
        json={
            "name": "Jane Doe",
            "email": email,
            "date_of_birth": "1980-04-14",
            "job_title": "Engineer",
            "password": PASSWORD,
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    user_id: str = r.json()["id"]
    return user_id


def _intercept(ui: PasskeyPage) -> list[str]:
    landed: list[str] = []

    def arrive(route: Route) -> None:
        landed.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="back at the application")

    ui.page.route("http://127.0.0.1:23457/**", arrive)
    return landed


def test_a_user_signs_in_to_an_application_with_the_page(ui: PasskeyPage, cluster: Cluster) -> None:
    email = new_email()
    user_id = _register(cluster, email)
    client = _create_client(cluster)
    landed = _intercept(ui)
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    with OAuth2Client(
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        redirect_uri=REDIRECT,
        scope="openid profile email",
        code_challenge_method="S256",
        timeout=30,
    ) as oauth:
        url, state = oauth.create_authorization_url(
            f"{cluster.base_url}/authorize", code_verifier=verifier, nonce=nonce
        )
        ui.page.goto(url)
        expect(ui.page.locator("#authorize-panel")).to_be_visible()
        expect(ui.page.locator("#authorize-client")).to_have_text("Reports")
        assert "authorize=" not in ui.page.url  # the request id leaves the address bar
        ui.password_login(email)
        ui.page.wait_for_url("http://127.0.0.1:23457/**")
        assert len(landed) == 1
        back = {k: v[0] for k, v in parse_qs(urlsplit(landed[0]).query).items()}
        assert back["state"] == state
        assert back["iss"] == cluster.base_url
        token = oauth.fetch_token(
            f"{cluster.base_url}/token", authorization_response=landed[0], code_verifier=verifier
        )
    jwks = httpx.get(f"{cluster.base_url}/.well-known/jwks.json", timeout=10).json()
    id_token = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": cluster.base_url},
        aud={"essential": True, "value": client["client_id"]},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True, "value": user_id},
        auth_time={"essential": True},
    ).validate(id_token.claims)
    assert id_token.claims["amr"] == ["pwd"]
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    info = httpx.get(f"{cluster.base_url}/userinfo", headers=bearer, timeout=10)
    assert info.json() == {
        "sub": user_id,
        "name": "Jane Doe",
        "birthdate": "1980-04-14",
        "email": email,
        "email_verified": False,  # registered, its link never opened
    }
    assert httpx.get(f"{cluster.base_url}/users/me", headers=bearer, timeout=10).status_code == 200
    # The page's own session ended on the way out: nothing to reuse in this tab.
    assert not ui.signed_in()


def test_cancelling_sends_access_denied_back(ui: PasskeyPage, cluster: Cluster) -> None:
    client = _create_client(cluster)
    landed = _intercept(ui)
    with OAuth2Client(
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        redirect_uri=REDIRECT,
        scope="openid",
        code_challenge_method="S256",
    ) as oauth:
        url, state = oauth.create_authorization_url(
            f"{cluster.base_url}/authorize", code_verifier=secrets.token_urlsafe(48)
        )
    ui.page.goto(url)
    ui.page.get_by_role("button", name="Cancel and go back").click()
    ui.page.wait_for_url("http://127.0.0.1:23457/**")
    back = parse_qs(urlsplit(landed[0]).query)
    assert back["error"] == ["access_denied"]
    assert back["state"] == [state]


def test_an_unregistered_redirect_uri_stays_on_the_platform(
    ui: PasskeyPage, cluster: Cluster
) -> None:
    client = _create_client(cluster)
    landed = _intercept(ui)
    response = ui.page.goto(
        f"{cluster.base_url}/authorize?response_type=code&client_id={client['client_id']}"
        "&redirect_uri=http://127.0.0.1:23457/callback/evil&code_challenge_method=S256"
        "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    assert response is not None
    assert response.status == 400
    assert landed == []


def _code_flow_in_page(
    ui: PasskeyPage, cluster: Cluster, client: dict[str, str], log_in: Callable[[], None]
) -> dict[str, Any]:
    """The application's side around `log_in` (what the user does on the page)."""
    landed = _intercept(ui)
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    with OAuth2Client(
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        redirect_uri=REDIRECT,
        scope="openid",
        code_challenge_method="S256",
        timeout=30,
    ) as oauth:
        url, _ = oauth.create_authorization_url(
            f"{cluster.base_url}/authorize", code_verifier=verifier, nonce=nonce
        )
        ui.page.goto(url)
        expect(ui.page.locator("#authorize-panel")).to_be_visible()
        log_in()
        ui.page.wait_for_url("http://127.0.0.1:23457/**")
        token = oauth.fetch_token(
            f"{cluster.base_url}/token", authorization_response=landed[-1], code_verifier=verifier
        )
    jwks = httpx.get(f"{cluster.base_url}/.well-known/jwks.json", timeout=10).json()
    id_token = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(nonce={"essential": True, "value": nonce}).validate(id_token.claims)
    return dict(id_token.claims)


def test_the_second_factor_and_passkeys_sign_in_to_an_application(
    ui: PasskeyPage, cluster: Cluster
) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    ui.add_passkey("Laptop")
    ui.expect_status('Passkey "Laptop" added')
    ui.logout()
    client = _create_client(cluster)

    def password_then_passkey() -> None:
        ui.password_login(email)
        ui.expect_status("Confirm with your passkey or a recovery code")
        ui.page.get_by_role("button", name="Use my passkey").click()

    claims = _code_flow_in_page(ui, cluster, client, password_then_passkey)
    assert claims["amr"] == ["pwd", "hwk"]

    def passkey_alone() -> None:
        ui.page.get_by_role("button", name="Log in with a passkey").click()

    claims = _code_flow_in_page(ui, cluster, client, passkey_alone)
    assert claims["amr"] == ["hwk", "user"]
