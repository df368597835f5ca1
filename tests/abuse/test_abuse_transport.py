"""Headers, CORS, client-IP trust and input edges, at the services' own edge.

The services are reachable without the gateway (a Kubernetes Service, a
port-forward, the docs port), so they carry the security headers themselves,
on every answer, errors included; the gateway hides their copies and adds its
own, so through nginx each appears exactly once (tested here against the
real services, next to the echo-upstream tests in tests/e2e).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.conftest import REDIS_URL, Services, new_user, start_services
from tests.faults.servers import delete_prefix, threaded_services

pytestmark = pytest.mark.anyio

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _assert_security_headers(r: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get_list(name) == [value], (name, r.status_code, r.request.url)
    media = r.headers.get("content-type", "").split(";")[0]
    if media.endswith("json"):
        assert r.headers.get_list("content-security-policy") == [API_CSP]


async def _chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 4096 + 1):
        yield b" " * 4096


async def test_every_answer_carries_the_security_headers(services: Services) -> None:
    body = new_user()
    created = await services.auth.post("/users", json=body)
    tokens = (
        await services.auth.post(
            "/login", json={"email": body["email"], "password": body["password"]}
        )
    ).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    auth, user = services.auth, services.user
    answers = [
        created,  # 201
        await auth.get("/.well-known/jwks.json"),  # 200, own Cache-Control
        await auth.get("/"),  # the HTML page: its own CSP, ours must not replace it
        await auth.post("/login", json={"email": "x@example.com", "password": "nope"}),  # 401
        await auth.post("/users", json=body),  # 409
        await auth.post("/users", json={}),  # 422
        await auth.get("/nowhere"),  # 404
        await auth.get("/login"),  # 405
        await auth.post(
            "/login", content=b"x" * 70_000, headers={"content-type": "application/json"}
        ),
        await user.get("/users/me", headers=bearer),  # 200
        await user.get("/users/me"),  # 401 + WWW-Authenticate
        await user.get(f"/users/{uuid.uuid4()}", headers=bearer),  # 403
        await user.get("/users?limit=0", headers=bearer),  # 422 (query bounds)
    ]
    expected = [201, 200, 200, 401, 409, 422, 404, 405, 413, 200, 401, 403, 422]
    assert [r.status_code for r in answers] == expected
    for r in answers:
        _assert_security_headers(r)
        assert "set-cookie" not in r.headers  # bearer tokens only: no cookie to protect
    page = answers[2]
    assert "script-src" in page.headers["content-security-policy"]


async def test_even_the_last_resort_500_carries_the_headers() -> None:
    # Starlette answers an unhandled exception from its outermost middleware,
    # outside RequestContextMiddleware: the 500 used to leave bare.
    from fastapi import FastAPI

    from shared.http.middleware import RequestContextMiddleware
    from shared.http.problems import install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestContextMiddleware, trusted_proxies=(), max_body_bytes=1024)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom", headers={"X-Request-ID": "report-me-0001"})
    assert r.status_code == 500
    assert "a bug" not in r.text
    _assert_security_headers(r)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"] == "report-me-0001"


async def test_oversized_chunked_body_is_413_not_400(services: Services) -> None:
    # Found here: without Content-Length, the body limit fired inside
    # FastAPI's body reader, which turned it into "400 error parsing the body".
    r = await services.auth.post(
        "/users", content=_chunks(200_000), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    _assert_security_headers(r)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b'{"email": "\xc3\x28"}', b"\x80"])
async def test_body_that_is_not_utf8_is_a_422_problem(services: Services, raw: bytes) -> None:
    # Found by schemathesis: a non-UTF-8 body got FastAPI's bare 400, which
    # no operation documents; malformed JSON is a 422 everywhere else.
    for path in ("/login", "/users", "/token/refresh"):
        r = await services.auth.post(
            path, content=raw, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "value", [0, 630720000, "630720000", 1e9, True, [1980, 4, 14], " 1980-04-14"]
)
async def test_date_of_birth_must_be_an_iso_string(services: Services, value: object) -> None:
    # Found by schemathesis: pydantic read numbers as Unix timestamps, so
    # {"date_of_birth": 0} registered someone born on 1970-01-01.
    r = await services.auth.post("/users", json={**new_user(), "date_of_birth": value})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "date_of_birth"


@pytest.mark.parametrize(
    "value", ["1899-12-31", "0001-01-01", "9999-12-31", "2999-01-01T00:00:00Z", "1980-02-30"]
)
async def test_dates_outside_a_sane_range_are_refused(services: Services, value: str) -> None:
    r = await services.auth.post("/users", json={**new_user(), "date_of_birth": value})
    assert r.status_code == 422, r.text


async def test_unicode_emails_are_normalised_into_one_identity(services: Services) -> None:
    # Fullwidth "john": NFKC folds it to ASCII.
    local = f"\uff4a\uff4f\uff48\uff4e{uuid.uuid4().hex[:6]}"
    body = new_user(email=f"{local}@Bücher.example")
    first = await services.auth.post("/users", json=body)
    assert first.status_code == 201, first.text
    ascii_local = unicodedata.normalize("NFKC", local)
    for variant in (
        f"{ascii_local}@bücher.example",  # NFKC + case folding of the local part
        f"{ascii_local.upper()}@BÜCHER.EXAMPLE",
        f"{ascii_local}@xn--bcher-kva.example",  # the same domain in IDNA form
    ):
        r = await services.auth.post("/users", json={**body, "email": variant})
        assert r.status_code == 409, (variant, r.text)
        login = await services.auth.post(
            "/login", json={"email": variant, "password": body["password"]}
        )
        assert login.status_code == 200, (variant, login.text)


# --- CORS: only configured origins --------------------------------------------------

ALLOWED = "https://app.example.com"


@pytest.fixture
async def cors_services(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"cors_origins": ALLOWED},
        user={"cors_origins": ALLOWED},
    ):
        yield s


async def test_cors_answers_only_configured_origins(cors_services: Services) -> None:
    for client, path in ((cors_services.auth, "/login"), (cors_services.user, "/users/me")):
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        ok = await client.options(path, headers={"Origin": ALLOWED, **preflight})
        assert ok.headers.get("access-control-allow-origin") == ALLOWED
        assert "access-control-allow-credentials" not in ok.headers  # bearer tokens, no cookies
        evil = await client.options(path, headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
        simple = await client.get(path, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers
        _assert_security_headers(simple)


async def test_no_cors_unless_configured(services: Services) -> None:
    r = await services.auth.options(
        "/login", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers
    assert services.auth_settings.cors_origins == ""


# --- X-Forwarded-For: believed only from configured proxies ---------------------------


@pytest.fixture
async def behind_proxy(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"trusted_proxies": "192.0.2.10"},
    ):
        yield s


async def _session_ip(s: Services, body: dict[str, str], peer: str, xff: str | None) -> str:
    headers = {"X-Forwarded-For": xff} if xff else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(s.auth_app, client=(peer, 40000)), base_url="http://auth"
    ) as c:
        r = await c.post(
            "/login", json={"email": body["email"], "password": body["password"]}, headers=headers
        )
        assert r.status_code == 200, r.text
        sessions = await c.get(
            "/sessions", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        return str(next(x["ip"] for x in sessions.json() if x["current"]))


@pytest.mark.parametrize(
    ("peer", "xff", "seen"),
    [
        ("192.0.2.10", "203.0.113.9", "203.0.113.9"),  # the gateway: believed
        ("192.0.2.10", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # client-written left part ignored
        ("192.0.2.10", "not-an-ip", "192.0.2.10"),  # garbage: fall back to the peer
        ("198.51.100.4", "203.0.113.9", "198.51.100.4"),  # anyone else: ignored
        ("198.51.100.4", None, "198.51.100.4"),
    ],
)
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    behind_proxy: Services, peer: str, xff: str | None, seen: str
) -> None:
    body = new_user()
    assert (await behind_proxy.auth.post("/users", json=body)).status_code == 201
    assert await _session_ip(behind_proxy, body, peer, xff) == seen


# --- through nginx: each security header exactly once ---------------------------------


def _load_cluster() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "deploy" / "local" / "cluster.py"
    spec = importlib.util.spec_from_file_location("_abuse_cluster", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = _load_cluster()
    nginx = cluster.find_nginx()
    assert nginx, "nginx is not installed: apt-get install nginx (.ci/run does it)"
    tmp = tmp_path_factory.mktemp("gw")
    prefix = f"test:gw:{uuid.uuid4().hex[:12]}:"
    from tests.e2e.processes import free_port

    port = free_port()
    try:
        with threaded_services(tmp, redis_url=REDIS_URL, redis_prefix=prefix) as (auth, user):
            cluster.render_gateway_config(
                tmp / "nginx",
                auth_upstream=f"127.0.0.1:{auth.port}",
                user_upstream=f"127.0.0.1:{user.port}",
                listen=f"127.0.0.1:{port}",
            )
            with (tmp / "nginx.out").open("wb") as out:
                proc = subprocess.Popen(
                    cluster.nginx_command(nginx, tmp / "nginx"),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 15
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                            break
                    assert proc.poll() is None, (tmp / "nginx.out").read_text()
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.05)
                yield base
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    finally:
        delete_prefix(REDIS_URL, prefix)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/.well-known/jwks.json"),  # auth, 200
        ("GET", "/users/me"),  # user, 401
        ("POST", "/login"),  # auth, 422
        ("GET", "/"),  # auth, the HTML page
        ("GET", "/nowhere"),  # the gateway's own 404
    ],
)
def test_security_headers_appear_once_through_the_gateway(
    gateway: str, method: str, path: str
) -> None:
    r = httpx.request(method, f"{gateway}{path}", json={} if method == "POST" else None)
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get_list(name) == [value], (name, r.headers.get_list(name))
    assert len(r.headers.get_list("content-security-policy")) <= 1


async def test_unsafe_or_missing_request_ids_are_replaced_by_fresh_ones() -> None:
    from fastapi import FastAPI

    from shared.http.middleware import RequestContextMiddleware

    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {}

    app.add_middleware(RequestContextMiddleware, trusted_proxies=(), max_body_bytes=1024)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        minted = [
            (await client.get("/ok", headers=h)).headers["x-request-id"]
            for h in [{}, {"X-Request-ID": "bad id\r\nx"}, {"X-Request-ID": "short"}] * 100
        ]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in minted)
    assert len(set(minted)) == len(minted)  # one per request, never reused
