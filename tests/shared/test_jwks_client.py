"""JWKSClient against a real HTTP server on 127.0.0.1, with time injected."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.tokens.jwk import rfc7638_thumbprint, rsa_public_jwk
from shared.tokens.jwks import JWKSClient
from shared.tokens.verify import KeysUnavailable, TokenVerifier

pytestmark = pytest.mark.anyio

TTL = 300.0
INTERVAL = 10.0


@pytest.fixture(scope="session")
def key_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def key_b() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, **extra: str) -> dict[str, str]:
    jwk = rsa_public_jwk(key.public_key())
    return {**jwk, "kid": rfc7638_thumbprint(jwk), "use": "sig", "alg": "RS256", **extra}


def kid_of(key: rsa.RSAPrivateKey) -> str:
    return rfc7638_thumbprint(rsa_public_jwk(key.public_key()))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class JWKSServer:
    """A tiny real HTTP server whose answer each test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"keys": []}'
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.requests = 0
        self._count_lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._count_lock:
                    outer.requests += 1
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                for name, value in outer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self.running = True

    def publish(self, *jwks: object) -> None:
        self.status = 200
        self.body = json.dumps({"keys": list(jwks)}).encode()

    def stop(self) -> None:
        if self.running:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self.running = False


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    srv = JWKSServer()
    yield srv
    srv.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outcomes() -> list[str]:
    return []


@asynccontextmanager
async def jwks_client(
    url: str, clock: Callable[[], float], outcomes: list[str], **options: Any
) -> AsyncIterator[JWKSClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield JWKSClient(
            url=url,
            http=http,
            cache_ttl_seconds=TTL,
            min_refetch_interval_seconds=INTERVAL,
            clock=clock,
            on_fetch=outcomes.append,
            **options,
        )


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/.well-known/jwks.json"


# --- caching ------------------------------------------------------------------


async def test_first_lookup_fetches_then_serves_from_cache(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        first = await client.get_key(kid_of(key_a))
        clock.advance(TTL - 1)
        second = await client.get_key(kid_of(key_a))
    assert first is not None
    assert first is second  # the parsed key object is cached, not rebuilt
    assert first.public_numbers() == key_a.public_key().public_numbers()
    assert server.requests == 1
    assert outcomes == ["ok"]


async def test_ttl_expiry_refetches(
    server: JWKSServer,
    clock: FakeClock,
    outcomes: list[str],
    key_a: rsa.RSAPrivateKey,
    key_b: rsa.RSAPrivateKey,
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.get_key(kid_of(key_a))
        # The issuer withdraws key A: once the TTL is over it must stop verifying.
        server.publish(public_jwk(key_b))
        clock.advance(TTL)
        assert await client.get_key(kid_of(key_a)) is None
        assert client.cached_kids() == {kid_of(key_b)}
    assert server.requests == 2
    assert outcomes == ["ok", "ok"]


async def test_fifty_concurrent_lookups_share_one_fetch(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    server.delay = 0.2  # every caller arrives while the fetch is in flight
    async with jwks_client(server.url, clock, outcomes) as client:
        keys = await asyncio.gather(*(client.get_key(kid_of(key_a)) for _ in range(50)))
    assert all(key is keys[0] and key is not None for key in keys)
    assert server.requests == 1
    assert outcomes == ["ok"]


async def test_unknown_kids_seen_during_a_fetch_wait_for_it(
    server: JWKSServer,
    clock: FakeClock,
    outcomes: list[str],
    key_a: rsa.RSAPrivateKey,
    key_b: rsa.RSAPrivateKey,
) -> None:
    # Just after a rotation, the first tokens signed by the new key arrive
    # together, mixed here with forged kids. The first caller fetches; every
    # other one must get its answer from that fetch: the new key, not a 401
    # because the fetch had just reset the rate limit, and no second request.
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.refresh()
        clock.advance(INTERVAL)
        server.publish(public_jwk(key_a), public_jwk(key_b))
        server.delay = 0.2
        new = [client.get_key(kid_of(key_b)) for _ in range(25)]
        forged = [client.get_key(f"random-{i}") for i in range(25)]
        found = await asyncio.gather(
            *(call for pair in zip(new, forged, strict=True) for call in pair)
        )
    assert all(key is found[0] and key is not None for key in found[0::2])
    assert found[1::2] == [None] * 25
    assert server.requests == 2
    assert outcomes == ["ok", "ok"]


async def test_stale_key_is_served_while_a_refresh_is_in_flight(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.refresh()
        clock.advance(TTL)
        server.delay = 0.5
        refreshing = asyncio.create_task(client.get_key(kid_of(key_a)))
        await asyncio.sleep(0.1)  # the refresh now holds the lock
        assert await client.get_key(kid_of(key_a)) is not None
        assert not refreshing.done()  # the second caller did not wait for it
        assert await refreshing is not None
    assert server.requests == 2


# --- unknown kid --------------------------------------------------------------


async def test_unknown_kid_refetch_is_rate_limited(
    server: JWKSServer,
    clock: FakeClock,
    outcomes: list[str],
    key_a: rsa.RSAPrivateKey,
    key_b: rsa.RSAPrivateKey,
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.get_key(kid_of(key_a))
        # Random kids right after a fetch: answered from the cache, no request.
        for i in range(20):
            assert await client.get_key(f"forged-{i}") is None
        assert server.requests == 1
        # The issuer rotates; a token with the new kid arrives after the interval.
        server.publish(public_jwk(key_a), public_jwk(key_b))
        clock.advance(INTERVAL)
        assert await client.get_key(kid_of(key_b)) is not None
        assert server.requests == 2
        # And again: random kids inside the interval cost nothing.
        clock.advance(INTERVAL / 2)
        assert await client.get_key("forged-again") is None
        assert server.requests == 2
        clock.advance(INTERVAL / 2)
        assert await client.get_key("forged-again") is None
        assert server.requests == 3


async def test_known_kid_is_never_blocked_by_the_rate_limit(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.get_key("forged")  # first fetch, kid unknown
        assert await client.get_key(kid_of(key_a)) is not None
    assert server.requests == 1


# --- stale-on-error -----------------------------------------------------------


async def test_stale_keys_are_served_when_the_server_returns_500(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.get_key(kid_of(key_a))
        server.status, server.body = 500, b'{"error": "boom"}'
        clock.advance(TTL + 1)
        assert await client.get_key(kid_of(key_a)) is not None
        # The failed refresh is retried at most once per interval, not per request.
        assert await client.get_key(kid_of(key_a)) is not None
        assert server.requests == 2
        clock.advance(INTERVAL)
        assert await client.get_key(kid_of(key_a)) is not None
        assert server.requests == 3
        # Recovery: the next retry replaces the stale set.
        server.publish(public_jwk(key_a))
        clock.advance(INTERVAL)
        await client.get_key(kid_of(key_a))
    assert outcomes == ["ok", "error", "error", "ok"]


async def test_stale_keys_are_served_when_the_server_is_down(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.get_key(kid_of(key_a))
        server.stop()
        clock.advance(TTL + 1)
        assert await client.get_key(kid_of(key_a)) is not None
        clock.advance(INTERVAL)
        assert await client.get_key("unknown") is None  # a failed refetch is not an outage
    assert outcomes == ["ok", "error", "error"]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b'{"keys": []}',
        b'{"keys": "no"}',
        b"[]",
        b'{"keys": [{"kty": "EC"}]}',
    ],
)
async def test_stale_keys_survive_a_useless_document(
    server: JWKSServer,
    clock: FakeClock,
    outcomes: list[str],
    key_a: rsa.RSAPrivateKey,
    body: bytes,
) -> None:
    server.publish(public_jwk(key_a))
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.get_key(kid_of(key_a))
        server.body = body
        clock.advance(TTL + 1)
        assert await client.get_key(kid_of(key_a)) is not None
        assert client.cached_kids() == {kid_of(key_a)}
    assert outcomes == ["ok", "error"]


async def test_keys_unavailable_when_never_fetched(clock: FakeClock, outcomes: list[str]) -> None:
    async with jwks_client(closed_port_url(), clock, outcomes) as client:
        with pytest.raises(KeysUnavailable):
            await client.get_key("any")
        with pytest.raises(KeysUnavailable):
            await client.refresh()
    assert outcomes == ["error", "error"]


async def test_keys_unavailable_when_the_first_answer_is_an_error(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.status = 503
    async with jwks_client(server.url, clock, outcomes) as client:
        with pytest.raises(KeysUnavailable):
            await client.get_key(kid_of(key_a))
        # With nothing to serve, the next call tries again at once.
        server.publish(public_jwk(key_a))
        assert await client.get_key(kid_of(key_a)) is not None
    assert outcomes == ["error", "ok"]


async def test_slow_server_hits_the_total_deadline(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    server.delay = 0.6
    async with jwks_client(server.url, clock, outcomes, timeout_seconds=0.2) as client:
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            await client.get_key(kid_of(key_a))
        assert time.monotonic() - started < 0.5
    assert outcomes == ["error"]


async def test_oversized_document_is_refused(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a), *[{"kty": "oct", "k": "A" * 1024}] * 400)
    async with jwks_client(server.url, clock, outcomes) as client:
        with pytest.raises(KeysUnavailable):
            await client.get_key(kid_of(key_a))


async def test_fetch_errors_are_logged_without_body_or_credentials(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    server.status, server.body = 500, b'{"secret": "s3cr3t-internal-detail"}'
    url = server.url.replace("http://", "http://user:hunter2@") + "?token=abc"
    with caplog.at_level(logging.WARNING, logger="shared.tokens.jwks"):
        async with jwks_client(url, clock, outcomes) as client:
            with pytest.raises(KeysUnavailable) as info:
                await client.get_key("k")
    assert "HTTP 200, got 500" in caplog.text
    for secret in ("s3cr3t", "hunter2", "token=abc"):
        assert secret not in caplog.text
        assert secret not in str(info.value)


# --- what is accepted from a JWKS -----------------------------------------------


async def test_only_rs256_signature_keys_of_2048_bits_with_a_kid_are_kept(
    server: JWKSServer,
    clock: FakeClock,
    outcomes: list[str],
    key_a: rsa.RSAPrivateKey,
    key_b: rsa.RSAPrivateKey,
) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    bare_b = rsa_public_jwk(key_b.public_key())  # no use/alg: accepted (both optional)
    dup = public_jwk(key_a, kid="dup")
    server.publish(
        public_jwk(key_a),
        {**bare_b, "kid": "bare"},
        public_jwk(key_b, kid="enc", use="enc"),
        public_jwk(key_b, kid="rs512", alg="RS512"),
        public_jwk(key_b, kid="ps256", alg="PS256"),
        public_jwk(short, kid="short"),
        {"kty": "EC", "crv": "P-256", "x": str(ec_key.x), "y": str(ec_key.y), "kid": "ec"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        dict(rsa_public_jwk(key_b.public_key()), use="sig"),  # no kid
        {**public_jwk(key_b), "kid": ""},
        {**public_jwk(key_b), "kid": 5},
        "not-an-object",
        dup,
        {**public_jwk(key_b), "kid": "dup"},  # two keys under one kid: neither
    )
    async with jwks_client(server.url, clock, outcomes) as client:
        await client.refresh()
        assert client.cached_kids() == {kid_of(key_a), "bare"}
        for kid in ("enc", "rs512", "ps256", "short", "ec", "hmac", "dup"):
            assert await client.get_key(kid) is None


async def test_redirects_are_not_followed(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    elsewhere = JWKSServer()
    try:
        elsewhere.publish(public_jwk(key_a))
        server.status, server.body = 302, b""
        server.headers = {"Location": elsewhere.url}
        async with httpx.AsyncClient(trust_env=False, follow_redirects=True) as http:
            client = JWKSClient(url=server.url, http=http, clock=clock, on_fetch=outcomes.append)
            with pytest.raises(KeysUnavailable):
                await client.get_key(kid_of(key_a))
        assert elsewhere.requests == 0
    finally:
        elsewhere.stop()
    assert outcomes == ["error"]


# --- end to end -------------------------------------------------------------------


async def test_verifier_through_the_jwks_client(
    server: JWKSServer, clock: FakeClock, outcomes: list[str], key_a: rsa.RSAPrivateKey
) -> None:
    server.publish(public_jwk(key_a))
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "http://localhost:8000",
            "sub": "auth-service",
            "aud": "user-service",
            "exp": now + 120,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "client_id": "auth-service",
            "scope": "profiles:write",
        },
        key_a,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": kid_of(key_a)},
    )
    async with jwks_client(server.url, clock, outcomes) as client:
        verifier = TokenVerifier(
            key_source=client,
            expected_issuer="http://localhost:8000",
            expected_audience="user-service",
        )
        for _ in range(5):
            assert (await verifier.verify(token)).is_service
    assert server.requests == 1


async def test_a_failing_metrics_hook_does_not_fail_lookups(
    server: JWKSServer, clock: FakeClock, key_a: rsa.RSAPrivateKey
) -> None:
    def broken(outcome: str) -> None:
        raise RuntimeError("metrics backend down")

    server.publish(public_jwk(key_a))
    async with httpx.AsyncClient(trust_env=False) as http:
        client = JWKSClient(url=server.url, http=http, clock=clock, on_fetch=broken)
        assert await client.get_key(kid_of(key_a)) is not None


async def test_deeply_nested_json_is_a_fetch_error(
    server: JWKSServer, clock: FakeClock, outcomes: list[str]
) -> None:
    server.body = b"[" * 100_000 + b"]" * 100_000
    async with jwks_client(server.url, clock, outcomes) as client:
        with pytest.raises(KeysUnavailable):
            await client.refresh()
    assert outcomes == ["error"]


@pytest.mark.parametrize("url", ["/relative/jwks.json", "file:///etc/jwks.json", "ftp://h/x"])
async def test_only_absolute_http_urls_are_accepted(url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(ValueError, match="http"):
            JWKSClient(url=url, http=http)
