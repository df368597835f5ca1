"""POST /revoke (RFC 7009): a client ends the session behind a token it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Services, new_user, rejected_within_a_second, start_services
from tests.support.audit import AuditCapture

pytestmark = pytest.mark.anyio


async def _login(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    tokens: dict[str, str] = r.json()
    return tokens


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _session_is_over(s: Services, tokens: dict[str, str]) -> bool:
    refresh = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    return refresh.status_code == 401 and await rejected_within_a_second(
        s.user, "/users/me", _bearer(tokens)
    )


@pytest.mark.parametrize(
    ("which", "hint"),
    [
        ("refresh_token", "refresh_token"),
        ("refresh_token", None),
        ("refresh_token", "access_token"),  # a wrong hint is only a hint
        ("access_token", "access_token"),
        ("access_token", None),
        ("access_token", "refresh_token"),
        ("refresh_token", "id_token"),  # an unknown hint is ignored
    ],
)
async def test_revoking_either_token_ends_its_session(
    services: Services, audit: AuditCapture, which: str, hint: str | None
) -> None:
    tokens = await _login(services)
    other = await _login(services)
    form = {"token": tokens[which], **({"token_type_hint": hint} if hint else {})}
    audit.clear()
    r = await services.auth.post("/revoke", data=form)
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert r.headers["cache-control"] == "no-store"
    assert await _session_is_over(services, tokens)
    # Nobody else's session: another account keeps working.
    assert (await services.user.get("/users/me", headers=_bearer(other))).status_code == 200
    revokes = audit.named("token.revoke")
    assert [(e["outcome"], e["session_revoked"], e["kind"]) for e in revokes] == [
        ("success", True, which.removesuffix("_token"))
    ]
    assert not audit.named("refresh.reuse_detected")
    assert tokens["refresh_token"] not in str(audit.events)


async def test_a_rotated_refresh_token_revokes_its_session_too(services: Services) -> None:
    tokens = await _login(services)
    r = await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    assert (
        await services.auth.post("/revoke", data={"token": tokens["refresh_token"]})
    ).status_code == 200
    assert await _session_is_over(services, r.json())


@pytest.mark.parametrize(
    "token",
    [
        "A" * 43,  # looks like a refresh token
        "not a token at all",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # alg none
        "x" * 4096,
    ],
)
async def test_unknown_or_garbage_tokens_answer_200_and_change_nothing(
    services: Services, token: str
) -> None:
    tokens = await _login(services)
    r = await services.auth.post("/revoke", data={"token": token})
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert (await services.user.get("/users/me", headers=_bearer(tokens))).status_code == 200


async def test_revoking_twice_answers_200_both_times(services: Services) -> None:
    tokens = await _login(services)
    for _ in range(2):
        r = await services.auth.post("/revoke", data={"token": tokens["refresh_token"]})
        assert r.status_code == 200
    assert await _session_is_over(services, tokens)


async def test_another_client_cannot_revoke_the_token(services: Services) -> None:
    tokens = await _login(services)
    for which in ("refresh_token", "access_token"):
        r = await services.auth.post(
            "/revoke", data={"token": tokens[which], "client_id": "other-app"}
        )
        assert r.status_code == 400
        assert r.json()["error"] == "unauthorized_client"
    assert (await services.user.get("/users/me", headers=_bearer(tokens))).status_code == 200
    # Its own client, named, may.
    r = await services.auth.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": "idp-web"}
    )
    assert r.status_code == 200
    assert await _session_is_over(services, tokens)


async def test_malformed_requests_are_rfc6749_errors(services: Services) -> None:
    tokens = await _login(services)
    missing = await services.auth.post("/revoke", data={"token_type_hint": "refresh_token"})
    as_json = await services.auth.post("/revoke", json={"token": tokens["refresh_token"]})
    too_long = await services.auth.post("/revoke", data={"token": "x" * 4097})
    for r in (missing, as_json, too_long):
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_request"
    assert (await services.user.get("/users/me", headers=_bearer(tokens))).status_code == 200


async def test_discovery_names_the_revocation_endpoint(services: Services) -> None:
    meta = (await services.auth.get("/.well-known/openid-configuration")).json()
    assert meta["revocation_endpoint"] == "http://localhost:8000/revoke"
    assert meta["revocation_endpoint_auth_methods_supported"] == [
        "none",
        "client_secret_basic",
        "client_secret_post",
    ]


async def test_revocations_are_counted(services: Services) -> None:
    tokens = await _login(services)
    await services.auth.post("/revoke", data={"token": tokens["refresh_token"]})
    await services.auth.post("/revoke", data={"token": "A" * 43})
    text = (await services.auth.get("/metrics")).text
    assert 'idp_token_revocations_total{result="revoked",service="auth-service"} 1.0' in text
    assert 'idp_token_revocations_total{result="unknown_token",service="auth-service"} 1.0' in text


async def test_revocation_is_rate_limited_per_ip(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"rate_limit_enabled": True, "refresh_ip_limit": 2},
    ):
        codes = [
            (await s.auth.post("/revoke", data={"token": "A" * 43})).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        limited = await s.auth.post("/revoke", data={"token": "A" * 43})
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
