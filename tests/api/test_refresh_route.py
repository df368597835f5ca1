"""`POST /token/refresh`: the fast handler answers exactly like FastAPI's own.

`auth_service.api.tokens._RefreshRoute` validates the JSON body in one pass
and calls the endpoint without FastAPI's dependency solving; whatever it
would not answer identically goes to FastAPI's handler. These tests send the
same requests through both (a dependency override forces FastAPI's) and
compare what a client sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth_service.api.deps import get_ctx
from tests.conftest import Services, new_user

pytestmark = pytest.mark.anyio

# Headers that differ between any two answers (request ids, sizes of
# different tokens), not between the two handlers.
_PER_RESPONSE = {"x-request-id", "content-length", "date"}


@contextmanager
def _generic(app: FastAPI) -> Iterator[None]:
    """FastAPI's own handler: any dependency override sends requests there."""
    app.dependency_overrides[get_ctx] = get_ctx
    try:
        yield
    finally:
        app.dependency_overrides.clear()


async def _tokens(s: Services) -> list[str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    out = []
    for _ in range(2):
        r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
        assert r.status_code == 200, r.text
        out.append(r.json()["refresh_token"])
    return out


def _headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k not in _PER_RESPONSE}


def _shape(r: httpx.Response) -> Any:
    """The body with the fresh tokens' values left out."""
    body = r.json()
    if r.status_code == 200:
        return {k: v for k, v in body.items() if k not in ("access_token", "refresh_token")}
    return body


async def test_a_refresh_answers_the_same_through_both_handlers(services: Services) -> None:
    fast_token, generic_token = await _tokens(services)
    fast = await services.auth.post("/token/refresh", json={"refresh_token": fast_token})
    with _generic(services.auth_app):
        generic = await services.auth.post("/token/refresh", json={"refresh_token": generic_token})
    assert fast.status_code == generic.status_code == 200
    assert _shape(fast) == _shape(generic)
    assert _headers(fast) == _headers(generic)
    assert fast.headers["cache-control"] == "no-store"
    # Each rotated: the new refresh tokens work, the old ones are spent.
    for answer in (fast, generic):
        again = await services.auth.post(
            "/token/refresh", json={"refresh_token": answer.json()["refresh_token"]}
        )
        assert again.status_code == 200
    reused = await services.auth.post("/token/refresh", json={"refresh_token": fast_token})
    assert reused.status_code == 401


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"refresh_token": "a-token-nobody-issued"}', "application/json"),
        (b'{"refresh_token": "a-token-nobody-issued"}', "Application/JSON; charset=utf-8"),
        (b"{}", "application/json"),
        (b"", "application/json"),
        (b"not json", "application/json"),
        (b'{"refresh_token": ""}', "application/json"),
        (b'{"refresh_token": "x", "extra": 1}', "application/json"),
        (b'{"refresh_token": 12}', "application/json"),
        (b'{"refresh_token": "x", "client_id": null}', "application/json"),
        (b'{"refresh_token": "' + b"x" * 513 + b'"}', "application/json"),
        (b'{"refresh_token": "x", "refresh_token": "y"}', "application/json"),
        (b'{"refresh_token": "\\ud800"}', "application/json"),
        (b'["refresh_token"]', "application/json"),
        (b'{"refresh_token": "x"}', "text/plain"),
        (b'{"refresh_token": "x"}', "application/merge-patch+json"),
        (b'{"refresh_token": "x"}', ""),
    ],
)
async def test_every_refusal_is_the_same_through_both_handlers(
    services: Services, content: bytes, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    fast = await services.auth.post("/token/refresh", content=content, headers=headers)
    with _generic(services.auth_app):
        generic = await services.auth.post("/token/refresh", content=content, headers=headers)
    assert fast.status_code == generic.status_code
    assert fast.status_code in (401, 422)
    assert fast.json() == generic.json()
    assert _headers(fast) == _headers(generic)
    assert fast.headers["content-type"] == "application/problem+json"


async def test_the_declared_body_stays_in_the_openapi_document(services: Services) -> None:
    doc = (await services.auth.get("/openapi.json")).json()
    op = doc["paths"]["/token/refresh"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/RefreshRequest"}
    assert op["requestBody"]["required"] is True
    assert {"200", "401", "422", "429", "503"} <= set(op["responses"])
    assert op["summary"] == "Rotate a refresh token"
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TokenResponse"
    }
