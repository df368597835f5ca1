"""The authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636) and OpenID
Connect, with Authlib as the relying party and joserfc checking the ID token.

The page's own login is driven through its API here (POST /login, then
/authorize/continue as the page's script does); tests/browser drives it in
Chromium.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.integrations.base_client.errors import OAuthError as AuthlibError
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import (
    ISSUER,
    MailSink,
    Services,
    mail_sent,
    mailing_services,
    new_user,
    rejected_within_a_second,
)
from tests.support.audit import AuditCapture
from tests.support.mail import VERIFY_SUBJECT, messages_to, verify_link
from tests.support.oauth import (
    REDIRECT,
    Client,
    approve_as,
    authlib_client,
    claims_of,
    code_client,
    code_flow_client,
    header_of,
)

pytestmark = pytest.mark.anyio

AUTHORIZE = "http://auth-service/authorize"


async def _user(s: Services) -> tuple[dict[str, str], dict[str, str]]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    return body, r.json()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _verified_id_token(s: Services, id_token: str, *, client_id: str, nonce: str) -> Any:
    jwks = (await s.auth.get("/.well-known/jwks.json")).json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": client_id},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        auth_time={"essential": True},
    ).validate(token.claims)
    return token


async def _code_flow(
    s: Services, client: Client, tokens: dict[str, str], **authlib: Any
) -> tuple[dict[str, Any], str, str, str]:
    """Run the flow; returns (token response, state, nonce, redirect URL)."""
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    async with code_flow_client(s, client, **authlib) as oauth:
        url, state = oauth.create_authorization_url(AUTHORIZE, code_verifier=verifier, nonce=nonce)
        redirect_to = await approve_as(s, url, tokens)
        token = await oauth.fetch_token(
            "/token", authorization_response=redirect_to, code_verifier=verifier
        )
    return dict(token), state, nonce, redirect_to


async def test_the_full_code_flow_for_a_confidential_client(
    services: Services, audit: AuditCapture
) -> None:
    body, tokens = await _user(services)
    client = await code_client(services)
    audit.clear()
    token, state, nonce, redirect_to = await _code_flow(services, client, tokens)
    back = _query(redirect_to)
    assert redirect_to.startswith(REDIRECT + "?")
    assert back["state"] == state  # carried unchanged
    assert back["iss"] == ISSUER  # RFC 9207
    assert set(token) >= {"access_token", "refresh_token", "id_token", "expires_in"}
    assert token["scope"] == "openid profile email"

    id_token = await _verified_id_token(
        services, token["id_token"], client_id=client.client_id, nonce=nonce
    )
    assert id_token.header["typ"] == "JWT"  # never usable as an at+jwt access token
    assert id_token.claims["sub"] == tokens["user_id"]
    assert id_token.claims["amr"] == ["pwd"]
    assert id_token.claims["auth_time"] == claims_of(tokens["access_token"])["auth_time"]
    assert "at_hash" in id_token.claims

    access = claims_of(token["access_token"])
    assert header_of(token["access_token"])["typ"] == "at+jwt"
    assert access["client_id"] == client.client_id
    assert access["sub"] == tokens["user_id"]
    assert access["roles"] == []
    assert access["sid"] != claims_of(tokens["access_token"])["sid"]  # its own session

    # The platform's API serves the application what the user granted ...
    me = await services.user.get("/users/me", headers=_bearer(token["access_token"]))
    assert me.status_code == 200
    info = await services.auth.get("/userinfo", headers=_bearer(token["access_token"]))
    assert info.status_code == 200, info.text
    assert info.json() == {
        "sub": tokens["user_id"],
        "name": body["name"],
        "birthdate": "1980-04-14",
        "email": body["email"],
        # Registered, never verified (no mail configured here).
        "email_verified": False,
    }
    # ... but not the account itself: no password change, no session list.
    assert (
        await services.auth.get("/sessions", headers=_bearer(token["access_token"]))
    ).status_code == 401
    # The ID token is not an access token anywhere.
    assert (
        await services.user.get("/users/me", headers=_bearer(token["id_token"]))
    ).status_code == 401

    events = [(e["event"], e["outcome"]) for e in audit.events if e["event"].startswith("oauth.")]
    assert events == [
        ("oauth.authorize", "success"),
        ("oauth.approve", "success"),
        ("oauth.code", "success"),
    ]
    for secret in (token["access_token"], token["refresh_token"], client.client_secret):
        assert secret is not None
        assert secret not in str(audit.events)


async def test_refresh_keeps_the_client_and_scope_and_needs_the_secret(
    services: Services,
) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    token, *_ = await _code_flow(services, client, tokens, scope="openid email")
    async with code_flow_client(services, client) as oauth:
        renewed = await oauth.refresh_token("/token", refresh_token=token["refresh_token"])
    access = claims_of(renewed["access_token"])
    assert access["client_id"] == client.client_id
    assert access["scope"] == "openid email"
    assert access["roles"] == []
    assert renewed["refresh_token"] != token["refresh_token"]
    # Without the client's secret, or as the page, the token is refused.
    for form in (
        {"client_id": client.client_id},
        {},
        {"client_id": "idp-web"},
    ):
        r = await services.auth.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"], **form},
        )
        assert r.status_code in (400, 401), r.text
        assert r.json()["error"] in ("invalid_client", "invalid_grant")


async def test_a_public_client_uses_pkce_alone(services: Services) -> None:
    _, tokens = await _user(services)
    client = await code_client(services, public=True)
    assert client.client_secret is None
    token, _, nonce, _ = await _code_flow(services, client, tokens)
    await _verified_id_token(services, token["id_token"], client_id=client.client_id, nonce=nonce)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "/extra",  # extra path
        "https://app.example/call",  # prefix
        REDIRECT + "?next=/",  # extra query
        REDIRECT + "#x",  # fragment
        "http://app.example/callback",  # other scheme
        "https://app.example:8443/callback",  # other port
        "https://app.example.evil.example/callback",  # other host
        "https://APP.example/callback",  # not byte-equal
        REDIRECT + "/",
        "",
    ],
)
async def test_redirect_uri_tricks_never_redirect(services: Services, redirect_uri: str) -> None:
    client = await code_client(services)
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "state": "s1",
    }
    r = await services.auth.get("/authorize", params=params)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_unknown_or_repeated_client_never_redirects(services: Services) -> None:
    client = await code_client(services)
    unknown = await services.auth.get(
        "/authorize",
        params={"response_type": "code", "client_id": "nope", "redirect_uri": REDIRECT},
    )
    assert unknown.status_code == 400
    assert "location" not in unknown.headers
    repeated = await services.auth.get(
        f"/authorize?response_type=code&client_id={client.client_id}"
        f"&redirect_uri={REDIRECT}&redirect_uri=https://evil.example/cb"
    )
    assert repeated.status_code == 400
    assert "location" not in repeated.headers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": None}, "invalid_request"),  # PKCE missing
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),  # implicit
        ({"response_type": "code id_token"}, "unsupported_response_type"),  # hybrid
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"prompt": "none"}, "login_required"),
        ({"request": "eyJ..."}, "request_not_supported"),
    ],
)
async def test_other_errors_go_back_to_the_client_with_state(
    services: Services, change: dict[str, str | None], error: str
) -> None:
    client = await code_client(services)
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "state": "st+te/=?&",
    }
    params.update(change)
    r = await services.auth.get(
        "/authorize", params={k: v for k, v in params.items() if v is not None}
    )
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    back = _query(location)
    assert back["error"] == error
    assert back["state"] == "st+te/=?&"


async def test_a_client_not_registered_for_the_code_flow_is_told_so(services: Services) -> None:
    client = await code_client(
        services, grant_types=["client_credentials"], redirect_uris=[], audience="x"
    )
    r = await services.auth.get(
        "/authorize",
        params={"response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT},
    )
    assert r.status_code == 400  # no redirect URI registered at all: nowhere to send it


async def _code(s: Services, client: Client, tokens: dict[str, str]) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    async with code_flow_client(s, client) as oauth:
        url, _ = oauth.create_authorization_url(AUTHORIZE, code_verifier=verifier)
        redirect_to = await approve_as(s, url, tokens)
    return _query(redirect_to)["code"], verifier


def _exchange_form(code: str, verifier: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **extra,
    }


def _auth(client: Client) -> tuple[str, str]:
    assert client.client_secret is not None
    return (client.client_id, client.client_secret)


async def test_a_wrong_verifier_is_refused_and_spends_the_code(services: Services) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    code, verifier = await _code(services, client, tokens)
    wrong = await services.auth.post(
        "/token", data=_exchange_form(code, secrets.token_urlsafe(48)), auth=_auth(client)
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    right = await services.auth.post(
        "/token", data=_exchange_form(code, verifier), auth=_auth(client)
    )
    assert right.status_code == 400
    assert right.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "form",
    [
        {"code_verifier": ""},  # PKCE verifier missing
        {"redirect_uri": REDIRECT + "/other"},
        {"redirect_uri": ""},
        {"code": "not-a-code"},
    ],
)
async def test_exchange_mismatches_are_invalid_grant(
    services: Services, form: dict[str, str]
) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    code, verifier = await _code(services, client, tokens)
    r = await services.auth.post(
        "/token", data={**_exchange_form(code, verifier), **form}, auth=_auth(client)
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


async def test_another_client_cannot_redeem_the_code(services: Services) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    other = await code_client(services)
    code, verifier = await _code(services, client, tokens)
    r = await services.auth.post("/token", data=_exchange_form(code, verifier), auth=_auth(other))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    # Nor a client without its secret.
    r = await services.auth.post(
        "/token", data=_exchange_form(code, verifier, client_id=client.client_id)
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_code_replay_revokes_what_the_code_issued(
    services: Services, audit: AuditCapture
) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    code, verifier = await _code(services, client, tokens)
    first = await services.auth.post(
        "/token", data=_exchange_form(code, verifier), auth=_auth(client)
    )
    assert first.status_code == 200, first.text
    issued = first.json()
    assert (
        await services.user.get("/users/me", headers=_bearer(issued["access_token"]))
    ).status_code == 200
    audit.clear()
    replay = await services.auth.post(
        "/token", data=_exchange_form(code, verifier), auth=_auth(client)
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert await rejected_within_a_second(
        services.user, "/users/me", _bearer(issued["access_token"])
    )
    async with code_flow_client(services, client) as oauth:
        with pytest.raises(AuthlibError):
            await oauth.refresh_token("/token", refresh_token=issued["refresh_token"])
    [event] = audit.named("oauth.code")
    assert (event["outcome"], event["reason"]) == ("failure", "code_reused")
    assert event["session_id"] == claims_of(issued["access_token"])["sid"]
    # The user's own page session is untouched.
    assert (
        await services.user.get("/users/me", headers=_bearer(tokens["access_token"]))
    ).status_code == 200


async def test_a_request_is_answered_once_and_only_by_a_page_token(services: Services) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    verifier = secrets.token_urlsafe(48)
    async with code_flow_client(services, client) as oauth:
        url, _ = oauth.create_authorization_url(AUTHORIZE, code_verifier=verifier)
    location = (await services.auth.get(url)).headers["location"]
    request_id = location.removeprefix("/?authorize=")
    pending = await services.auth.get(f"/authorize/requests/{request_id}")
    assert pending.json() == {"client_name": "Test app", "scope": "openid profile email"}
    no_token = await services.auth.post("/authorize/continue", json={"request_id": request_id})
    assert no_token.status_code == 401
    ok = await services.auth.post(
        "/authorize/continue",
        json={"request_id": request_id},
        headers=_bearer(tokens["access_token"]),
    )
    assert ok.status_code == 200
    again = await services.auth.post(
        "/authorize/continue",
        json={"request_id": request_id},
        headers=_bearer(tokens["access_token"]),
    )
    assert again.status_code == 400
    assert (await services.auth.get(f"/authorize/requests/{request_id}")).status_code == 404


async def test_declining_tells_the_client_access_denied(services: Services) -> None:
    client = await code_client(services)
    verifier = secrets.token_urlsafe(48)
    async with code_flow_client(services, client) as oauth:
        url, state = oauth.create_authorization_url(AUTHORIZE, code_verifier=verifier)
    request_id = (await services.auth.get(url)).headers["location"].removeprefix("/?authorize=")
    r = await services.auth.post("/authorize/deny", json={"request_id": request_id})
    assert r.status_code == 200
    back = _query(r.json()["redirect_to"])
    assert back["error"] == "access_denied"
    assert back["state"] == state


async def test_userinfo_releases_by_scope_only(services: Services) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    token, *_ = await _code_flow(services, client, tokens, scope="openid")
    info = await services.auth.get("/userinfo", headers=_bearer(token["access_token"]))
    assert info.json() == {"sub": tokens["user_id"]}
    no_openid = await code_client(services, scopes=["profile"])
    token, *_ = await _code_flow(services, no_openid, tokens, scope="profile")
    assert "id_token" not in token
    r = await services.auth.get("/userinfo", headers=_bearer(token["access_token"]))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert (await services.auth.get("/userinfo")).status_code == 401


async def test_discovery_describes_the_code_flow(services: Services) -> None:
    meta = (await services.auth.get("/.well-known/openid-configuration")).json()
    assert meta["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert meta["token_endpoint"] == f"{ISSUER}/token"
    assert meta["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert meta["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert meta["introspection_endpoint"] == f"{ISSUER}/introspect"
    assert meta["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert meta["subject_types_supported"] == ["public"]
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(
        meta["grant_types_supported"]
    )
    assert {"client_secret_basic", "client_secret_post", "none"} == set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert {"openid", "profile", "email"} <= set(meta["scopes_supported"])
    assert {"sub", "nonce", "auth_time", "amr", "email", "email_verified", "name"} <= set(
        meta["claims_supported"]
    )


__all__ = ["authlib_client"]


async def test_the_pages_json_refresh_does_not_serve_a_registered_client(
    services: Services,
) -> None:
    _, tokens = await _user(services)
    client = await code_client(services)
    token, *_ = await _code_flow(services, client, tokens)
    r = await services.auth.post(
        "/token/refresh",
        json={"refresh_token": token["refresh_token"], "client_id": client.client_id},
    )
    assert r.status_code == 401
    r = await services.auth.post("/token/refresh", json={"refresh_token": token["refresh_token"]})
    assert r.status_code == 401
    # Untouched: the application itself still refreshes it.
    async with code_flow_client(services, client) as oauth:
        await oauth.refresh_token("/token", refresh_token=token["refresh_token"])


async def test_concurrent_redemptions_leave_nothing_alive_but_one_winner_at_most(
    services: Services,
) -> None:
    import asyncio

    _, tokens = await _user(services)
    client = await code_client(services)
    code, verifier = await _code(services, client, tokens)
    answers = await asyncio.gather(
        *(
            services.auth.post("/token", data=_exchange_form(code, verifier), auth=_auth(client))
            for _ in range(4)
        )
    )
    winners = [r for r in answers if r.status_code == 200]
    assert len(winners) <= 1
    assert all(r.json()["error"] == "invalid_grant" for r in answers if r.status_code != 200)
    # A replay raced the winner: whatever it was handed is revoked (RFC 6749 §4.1.2).
    for r in winners:
        assert await rejected_within_a_second(
            services.user, "/users/me", _bearer(r.json()["access_token"])
        )


async def test_require_verified_email_holds_for_the_code_flow(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], mail_sink: MailSink
) -> None:
    """The page's login refuses an unverified account with REQUIRE_VERIFIED_EMAIL;
    a page session from before the setting was turned on gets no code either,
    and /userinfo reports the address verified once it is."""
    async for s in mailing_services(tmp_path, redis_prefix, sqlite_urls, mail_sink):
        body, tokens = await _user(s)
        client = await code_client(s)
    async for s in mailing_services(
        tmp_path, redis_prefix, sqlite_urls, mail_sink, require_verified_email=True
    ):
        verifier = secrets.token_urlsafe(48)
        async with code_flow_client(s, client) as oauth:
            url, _ = oauth.create_authorization_url(AUTHORIZE, code_verifier=verifier, nonce="n-1")
            r = await s.auth.get(url)
            assert r.status_code == 303, r.text
            request_id = r.headers["location"].removeprefix("/?authorize=")
            refused = await s.auth.post(
                "/authorize/continue",
                json={"request_id": request_id},
                headers=_bearer(tokens["access_token"]),
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["type"].endswith(":email-not-verified")
            assert "redirect_to" not in refused.json()
            # The request waits: verify the address (the refusal mailed a
            # link), then continue.
            assert (await s.auth.get(f"/authorize/requests/{request_id}")).status_code == 200
            await mail_sent(s)
            link = verify_link(messages_to(mail_sink.directory, body["email"], VERIFY_SUBJECT)[-1])
            verified = await s.auth.post("/email/verify", json={"token": link[1]})
            assert verified.status_code == 204, verified.text
            login = await s.auth.post(
                "/login", json={"email": body["email"], "password": body["password"]}
            )
            assert login.status_code == 200, login.text
            ok = await s.auth.post(
                "/authorize/continue",
                json={"request_id": request_id},
                headers=_bearer(login.json()["access_token"]),
            )
            assert ok.status_code == 200, ok.text
            token = await oauth.fetch_token(
                "/token", authorization_response=ok.json()["redirect_to"], code_verifier=verifier
            )
        info = await s.auth.get("/userinfo", headers=_bearer(token["access_token"]))
        assert info.status_code == 200, info.text
        assert (info.json()["email"], info.json()["email_verified"]) == (body["email"], True)
