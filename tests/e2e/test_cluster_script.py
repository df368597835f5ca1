"""Tests of the local tooling, not of the services: the nginx gateway config,
the Python fallback gateway and deploy/local/cluster.py.

Upstreams are tiny echo apps that answer with what they received, and the
cluster runs stand-in service apps, so these tests pass whatever state the
real services are in. Every server binds a free port, so a running
`make run` does not get in the way.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager

from tests.e2e.processes import free_port

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "deploy" / "local"

pytestmark = pytest.mark.e2e


def _load(name: str) -> ModuleType:
    """Import deploy/local/<name>.py (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_tooling_{name}", LOCAL / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


cluster = _load("cluster")
gateway = _load("gateway")

# (method, path, upstream) as in docs/ARCHITECTURE.md's routing table.
ROUTES = [
    ("POST", "/users", "auth"),
    ("GET", "/users", "user"),
    ("GET", "/users/me", "user"),
    ("PATCH", "/users/me", "user"),
    ("DELETE", "/users/me", "auth"),
    ("GET", "/users/me/export", "auth"),
    ("GET", "/users/0b7c1a9e-3c38-4f57-9a43-6f1d1c1e2f10", "user"),
    ("POST", "/login", "auth"),
    ("POST", "/login/mfa", "auth"),
    ("POST", "/token", "auth"),
    ("POST", "/token/refresh", "auth"),
    ("POST", "/revoke", "auth"),
    ("POST", "/introspect", "auth"),
    ("GET", "/authorize", "auth"),
    ("GET", "/authorize/requests/abc", "auth"),
    ("POST", "/authorize/continue", "auth"),
    ("POST", "/authorize/deny", "auth"),
    ("GET", "/userinfo", "auth"),
    ("POST", "/userinfo", "auth"),
    ("POST", "/logout", "auth"),
    ("GET", "/sessions", "auth"),
    ("DELETE", "/sessions/some-sid", "auth"),
    ("POST", "/webauthn/register/options", "auth"),
    ("GET", "/webauthn/credentials", "auth"),
    ("DELETE", "/webauthn/credentials/abc_DEF-1", "auth"),
    ("POST", "/password/change", "auth"),
    ("POST", "/password/forgot", "auth"),
    ("POST", "/password/reset", "auth"),
    ("POST", "/email/verify", "auth"),
    ("POST", "/email/verify/resend", "auth"),
    ("POST", "/email/change", "auth"),
    ("POST", "/totp/enrol", "auth"),
    ("POST", "/totp/confirm", "auth"),
    ("DELETE", "/totp", "auth"),
    ("GET", "/.well-known/jwks.json", "auth"),
    ("GET", "/.well-known/openid-configuration", "auth"),
    ("GET", "/", "auth"),
    ("GET", "/static/passkeys.js", "auth"),
]
NOT_ROUTED = [
    ("POST", "/internal/profiles"),
    ("GET", "/internal/x"),
    ("GET", "/metrics"),
    ("GET", "/readyz"),
    ("GET", "/docs"),
    ("GET", "/loginx"),
    ("GET", "/totpx"),
    ("GET", "/userss"),
    ("GET", "/authorizex"),
    ("GET", "/userinfo/x"),
    ("GET", "/nowhere"),
]
PROBLEM_404 = b'{"type":"about:blank","title":"Not Found","status":404}'
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
LIMIT = 64 * 1024
CLIENT_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


ROUTE_PARAMS = [pytest.param(*route, id=f"{route[0]} {route[1]}") for route in ROUTES]
NOT_ROUTED_PARAMS = [pytest.param(*route, id=f"{route[0]} {route[1]}") for route in NOT_ROUTED]


# --- upstream stand-ins ----------------------------------------------------------


def echo_app(name: str) -> Any:
    """ASGI app answering JSON with what it received; `?status=N` sets the status."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        query = scope["query_string"].decode()
        status = int(query.removeprefix("status=")) if query.startswith("status=") else 200
        document = {
            "service": name,
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "peer": scope["client"][0] if scope.get("client") else None,
            "body_len": len(body),
        }
        content_type = b"application/problem+json" if status >= 400 else b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(document).encode()})

    return app


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class ThreadedServer:
    """A uvicorn server in a thread, on a socket bound to a free port."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            app, lifespan="off", ws="none", log_level="warning", proxy_headers=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "echo server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def wait_for_http(url: str, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text()}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer:\n{log.read_text()}")


# --- nginx -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = cluster.find_nginx()
    # Deliberately a failure, not a skip: .ci/run installs nginx.
    assert found, "nginx is not installed: apt-get install nginx (.ci/run does it)"
    return str(found)


@contextlib.contextmanager
def running_nginx(
    nginx: str,
    prefix: Path,
    *,
    auth_port: int,
    user_port: int,
    source_address: str | None = None,
) -> Iterator[str]:
    """nginx on the rendered template in front of the given ports; yields its base URL."""
    port = free_port()
    cluster.render_gateway_config(
        prefix,
        auth_upstream=f"127.0.0.1:{auth_port}",
        user_upstream=f"127.0.0.1:{user_port}",
        listen=f"127.0.0.1:{port}",
        source_address=source_address,
    )
    log = prefix / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            cluster.nginx_command(nginx, prefix), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/healthz", process, log)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    with ThreadedServer(echo_app("auth")) as auth, ThreadedServer(echo_app("user")) as user:
        yield {"auth_port": auth.port, "user_port": user.port}


@pytest.fixture(scope="module")
def nginx_gateway(
    nginx_binary: str, upstreams: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    prefix = tmp_path_factory.mktemp("nginx")
    with (
        running_nginx(nginx_binary, prefix, **upstreams) as base,
        httpx.Client(base_url=base, trust_env=False) as client,
    ):
        yield client


def test_rendered_config_passes_nginx_t(nginx_binary: str, tmp_path: Path) -> None:
    config = cluster.render_gateway_config(
        tmp_path, auth_upstream="127.0.0.1:8001", user_upstream="127.0.0.1:8002", listen="8000"
    )
    assert "${" not in config.read_text()
    result = subprocess.run(
        cluster.nginx_command(nginx_binary, tmp_path, test=True),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.parametrize(("method", "path", "upstream"), ROUTE_PARAMS)
def test_nginx_routes(nginx_gateway: httpx.Client, method: str, path: str, upstream: str) -> None:
    response = nginx_gateway.request(method, path)
    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["service"], echoed["method"], echoed["path"]) == (upstream, method, path)


@pytest.mark.parametrize(("method", "path"), NOT_ROUTED_PARAMS)
def test_nginx_does_not_route(nginx_gateway: httpx.Client, method: str, path: str) -> None:
    response = nginx_gateway.request(method, path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.content == PROBLEM_404


@pytest.mark.parametrize(
    "raw_path",
    [
        "/internal/../users/me",
        "/users/../internal/profiles",
        "/users/%2e%2e/internal/profiles",
        "/webauthn/..%2Finternal/profiles",
        "/users/me/.",
    ],
)
def test_nginx_refuses_dot_segments(nginx_gateway: httpx.Client, raw_path: str) -> None:
    # http.client sends the path verbatim; httpx would normalise it first.
    host, port = str(nginx_gateway.base_url.host), nginx_gateway.base_url.port
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        assert (response.status, response.read()) == (404, PROBLEM_404)
    finally:
        connection.close()


def test_nginx_passes_upstream_errors_unchanged(nginx_gateway: httpx.Client) -> None:
    response = nginx_gateway.get("/users/someone", params={"status": "404"})
    assert response.status_code == 404
    assert response.json()["service"] == "user"  # the service's body, not the gateway's


def test_nginx_forwarding_headers(nginx_gateway: httpx.Client) -> None:
    response = nginx_gateway.get(
        "/users/me",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Real-IP": "203.0.113.8",
            "Forwarded": "for=198.51.100.1",
            "traceparent": CLIENT_TRACEPARENT,
            "tracestate": "vendor=x",
            "baggage": "user=alice",
        },
    )
    seen = response.json()["headers"]
    # The edge replaces what the client claimed with the peer, never appends.
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["forwarded"] == "for=127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["host"] == f"127.0.0.1:{nginx_gateway.base_url.port}"
    # A client does not get to choose (or opt out of) the trace of its request.
    assert not {"traceparent", "tracestate", "baggage"} & set(seen)
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"])
    assert response.headers.get_list("x-request-id") == [seen["x-request-id"]]


def test_nginx_connects_from_the_source_address_the_services_trust(
    nginx_binary: str, upstreams: dict[str, int], tmp_path: Path
) -> None:
    # `make run` gives nginx a loopback address of its own (proxy_bind), so
    # the services can tell it from any other local client.
    source = cluster.GATEWAY_SOURCE_ADDRESS
    with running_nginx(nginx_binary, tmp_path, **upstreams, source_address=source) as base:
        echoed = httpx.get(f"{base}/users/me", trust_env=False).json()
    assert echoed["peer"] == source
    assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_nginx_request_id_kept_only_when_safe(nginx_gateway: httpx.Client) -> None:
    kept = nginx_gateway.get("/users/me", headers={"X-Request-ID": "client-id_1.2:3"})
    assert kept.json()["headers"]["x-request-id"] == "client-id_1.2:3"
    assert kept.headers["x-request-id"] == "client-id_1.2:3"
    for unsafe in ("<script>", "a" * 129, "has space", '"quoted"'):
        replaced = nginx_gateway.get("/users/me", headers={"X-Request-ID": unsafe})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.json()["headers"]["x-request-id"])


@pytest.mark.parametrize("path", ["/users/me", "/nowhere", "/healthz"])
def test_nginx_security_headers_once(nginx_gateway: httpx.Client, path: str) -> None:
    response = nginx_gateway.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], name
    assert response.headers["server"] == "nginx"  # server_tokens off: no version


def test_nginx_body_limit(nginx_gateway: httpx.Client) -> None:
    assert nginx_gateway.post("/login", content=b"x" * LIMIT).json()["body_len"] == LIMIT
    response = nginx_gateway.post("/login", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": "Content Too Large", "status": 413}


def test_nginx_rate_limits_credentials_and_signup(
    nginx_binary: str, upstreams: dict[str, int], tmp_path: Path
) -> None:
    # A fresh nginx: its limit_req state must not leak into the other tests.
    with (
        running_nginx(nginx_binary, tmp_path, **upstreams) as base,
        httpx.Client(base_url=base, trust_env=False) as client,
    ):
        logins = [client.post("/login") for _ in range(40)]
        signups = [client.post("/users") for _ in range(40)]
        listings = [client.get("/users") for _ in range(40)]  # not limited
    for responses in (logins, signups):
        codes = {r.status_code for r in responses}
        assert codes == {200, 429}, codes
        limited = next(r for r in responses if r.status_code == 429)
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.json()["status"] == 429
        assert limited.headers["retry-after"] == "1"
        assert limited.headers["x-frame-options"] == "DENY"
    assert {r.status_code for r in listings} == {200}


def test_nginx_upstream_down_is_502_problem(nginx_binary: str, tmp_path: Path) -> None:
    dead = free_port()
    with running_nginx(nginx_binary, tmp_path, auth_port=dead, user_port=dead) as base:
        response = httpx.get(f"{base}/users/me", trust_env=False)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Bad Gateway"


# --- the Python fallback gateway, in process --------------------------------------


class _ByHost(httpx.AsyncBaseTransport):
    """Sends each request to the in-process ASGI app named by its URL's host."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self._transports = {host: httpx.ASGITransport(app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transports[request.url.host].handle_async_request(request)


@pytest.fixture
async def fallback() -> AsyncIterator[httpx.AsyncClient]:
    upstream = httpx.AsyncClient(
        transport=_ByHost({"auth.upstream": echo_app("auth"), "user.upstream": echo_app("user")})
    )
    app = gateway.Gateway(
        auth_upstream="http://auth.upstream", user_upstream="http://user.upstream", client=upstream
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://gateway.test"
    ) as client:
        yield client
    await upstream.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path", "upstream"), ROUTE_PARAMS)
async def test_fallback_routes(
    fallback: httpx.AsyncClient, method: str, path: str, upstream: str
) -> None:
    response = await fallback.request(method, path)
    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["service"], echoed["method"], echoed["path"]) == (upstream, method, path)


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path"), NOT_ROUTED_PARAMS)
async def test_fallback_does_not_route(fallback: httpx.AsyncClient, method: str, path: str) -> None:
    response = await fallback.request(method, path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.content == PROBLEM_404


@pytest.mark.parametrize(
    "path", ["/internal/../users/me", "/users/../internal/profiles", "/users/me/."]
)
def test_fallback_refuses_dot_segments(path: str) -> None:
    # As the server sees it after percent-decoding (%2e%2e and %2F included).
    assert gateway.route("GET", path) is None


@pytest.mark.anyio
async def test_fallback_forwarding_headers(fallback: httpx.AsyncClient) -> None:
    response = await fallback.get(
        "/users/me",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Real-IP": "203.0.113.8",
            "Forwarded": "for=198.51.100.1",
            "traceparent": CLIENT_TRACEPARENT,
            "tracestate": "vendor=x",
            "baggage": "user=alice",
        },
    )
    seen = response.json()["headers"]
    client_ip = "127.0.0.1"  # what httpx.ASGITransport reports as the peer
    # The edge replaces what the client claimed with the peer, never appends.
    assert seen["x-forwarded-for"] == client_ip
    assert seen["x-real-ip"] == client_ip
    assert seen["forwarded"] == f"for={client_ip}"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["host"] == "gateway.test"
    # A client does not get to choose (or opt out of) the trace of its request.
    assert not {"traceparent", "tracestate", "baggage"} & set(seen)
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"])
    assert response.headers.get_list("x-request-id") == [seen["x-request-id"]]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], name


@pytest.mark.anyio
async def test_fallback_connects_from_the_source_address_the_services_trust(
    upstreams: dict[str, int],
) -> None:
    source = cluster.GATEWAY_SOURCE_ADDRESS
    app = gateway.Gateway(
        auth_upstream=f"http://127.0.0.1:{upstreams['auth_port']}",
        user_upstream=f"http://127.0.0.1:{upstreams['user_port']}",
        source_address=source,
    )
    # The lifespan closes the gateway's own upstream client at the end.
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw.test") as client,
    ):
        echoed = (await client.get("/users/me", headers={"X-Forwarded-For": "203.0.113.7"})).json()
    assert echoed["peer"] == source
    assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.anyio
async def test_fallback_request_id_kept_only_when_safe(fallback: httpx.AsyncClient) -> None:
    kept = await fallback.get("/users/me", headers={"X-Request-ID": "client-id_1.2:3"})
    assert kept.json()["headers"]["x-request-id"] == "client-id_1.2:3"
    for unsafe in ("<script>", "a" * 129, "has space"):
        replaced = await fallback.get("/users/me", headers={"X-Request-ID": unsafe})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.json()["headers"]["x-request-id"])


@pytest.mark.anyio
async def test_fallback_body_limit(fallback: httpx.AsyncClient) -> None:
    ok = await fallback.post("/login", content=b"x" * LIMIT)
    assert ok.json()["body_len"] == LIMIT
    too_big = await fallback.post("/login", content=b"x" * (LIMIT + 1))
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == "application/problem+json"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to check up front
        for _ in range(5):
            yield b"x" * 16_384

    streamed = await fallback.post("/login", content=chunked())
    assert streamed.status_code == 413


@pytest.mark.anyio
async def test_fallback_passes_upstream_errors_unchanged(fallback: httpx.AsyncClient) -> None:
    response = await fallback.get("/users/someone", params={"status": "404"})
    assert response.status_code == 404
    assert response.json()["service"] == "user"


@pytest.mark.anyio
async def test_fallback_upstream_down_is_502_problem() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = gateway.Gateway(auth_upstream=dead, user_upstream=dead)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://gateway.test"
    ) as client:
        response = await client.get("/users/me")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Bad Gateway"


# --- cluster.py as a process, with stand-in services -------------------------------

STANDIN = textwrap.dedent(
    """
    import os

    import redis.asyncio as aioredis
    from fastapi import FastAPI, Request, Response

    WIRED = (
        "REDIS_URL", "DATABASE_URL", "KEY_DIR", "USER_SERVICE_URL", "JWKS_URL", "ISSUER",
        "TRUSTED_PROXIES",
    )


    def _factory(name):
        def create_app():
            app = FastAPI()

            @app.get("/readyz")
            async def readyz(response: Response):
                client = aioredis.from_url(os.environ["REDIS_URL"])
                try:
                    await client.ping()
                except Exception:
                    response.status_code = 503
                finally:
                    await client.aclose()

            @app.api_route("/{path:path}", methods=["GET", "POST"])
            async def echo(request: Request, path: str):
                return {
                    "service": name,
                    "path": request.url.path,
                    "pid": os.getpid(),
                    "env": {key: os.environ.get(key) for key in WIRED},
                }

            return app

        return create_app


    create_auth = _factory("auth")
    create_user = _factory("user")


    def broken():
        raise RuntimeError("stand-in refuses to start")
    """
)


def test_embedded_redis_runs_scripts_and_survives_error_replies() -> None:
    # Regression: stock TcpFakeServer drops the connection on any error reply,
    # which breaks redis-py's EVALSHA -> NOSCRIPT -> EVAL (cunla/fakeredis-py#432).
    import redis

    handle = cluster.start_redis({})
    client = redis.Redis.from_url(handle.url)
    try:
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        assert [script(keys=["n"]), script(keys=["n"])] == [1, 2]
        client.set("s", "x")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            client.lpush("s", "y")
        assert client.ping()
    finally:
        client.close()
        handle.close()


class ClusterProcess:
    """deploy/local/cluster.py as a child process, its output collected."""

    def __init__(
        self, tmp_path: Path, gateway_kind: str, env: dict[str, str], auth_app: str
    ) -> None:
        (tmp_path / "standin.py").write_text(STANDIN)
        names = ("gateway", "auth", "user", "gateway-metrics")
        self.ports = {name: free_port() for name in names}
        self.data_dir = tmp_path / "data"
        argv = [sys.executable, str(LOCAL / "cluster.py"), "--gateway", gateway_kind]
        argv += ["--data-dir", str(self.data_dir)]
        argv += ["--auth-app", auth_app, "--user-app", "standin:create_user"]
        for name, port in self.ports.items():
            argv += [f"--{name}-port", str(port)]
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            argv,
            env={**env, "PYTHONPATH": str(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "cluster ready":
                self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self) -> None:
        assert self.ready.wait(60), f"no 'cluster ready':\n{self.output}"

    def wait_exit(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Any]:
    started: list[ClusterProcess] = []

    def start(
        gateway_kind: str, auth_app: str = "standin:create_auth", **env: str
    ) -> ClusterProcess:
        base = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        started.append(ClusterProcess(tmp_path, gateway_kind, {**base, **env}, auth_app))
        return started[-1]

    yield start
    for process in started:
        process.close()


@pytest.mark.parametrize(
    ("gateway_kind", "redis_url", "stop_signal"),
    [
        ("nginx", None, signal.SIGINT),  # embedded fakeredis, Ctrl-C
        ("python", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), signal.SIGTERM),
    ],
)
def test_cluster_starts_wires_routes_and_stops(
    start_cluster: Any, gateway_kind: str, redis_url: str | None, stop_signal: signal.Signals
) -> None:
    if gateway_kind == "nginx":
        assert cluster.find_nginx(), "nginx is not installed: apt-get install nginx"
    env = {"REDIS_URL": redis_url} if redis_url else {}
    running = start_cluster(gateway_kind, **env)
    running.wait_ready()
    ports, data = running.ports, running.data_dir
    base = f"http://127.0.0.1:{ports['gateway']}"

    registered = httpx.post(f"{base}/users", json={}, trust_env=False).json()
    profile = httpx.get(f"{base}/users/me", trust_env=False).json()
    hidden = httpx.get(f"{base}/internal/profiles", trust_env=False)
    assert (registered["service"], profile["service"]) == ("auth", "user")
    assert (hidden.status_code, hidden.content) == (404, PROBLEM_404)
    if gateway_kind == "nginx":
        # The gateway's own refusal, counted by the exporter make run starts.
        metrics = f"http://127.0.0.1:{ports['gateway-metrics']}/metrics"
        assert f"gateway metrics (mtail)  {metrics}" in running.output
        deadline = time.monotonic() + 10
        while "gateway_not_routed_total 1\n" not in httpx.get(metrics, trust_env=False).text:
            assert time.monotonic() < deadline, httpx.get(metrics, trust_env=False).text
            time.sleep(0.2)

    for echoed, name in ((registered, "auth"), (profile, "user")):
        env_seen = echoed["env"]
        assert env_seen["DATABASE_URL"] == f"sqlite+aiosqlite:///{data}/{name}.db"
        assert env_seen["KEY_DIR"] == str(data / "keys")
        assert env_seen["USER_SERVICE_URL"] == f"http://127.0.0.1:{ports['user']}"
        assert env_seen["JWKS_URL"] == f"http://127.0.0.1:{ports['auth']}/.well-known/jwks.json"
        assert env_seen["ISSUER"] == f"http://localhost:{ports['gateway']}"
        # Forwarded headers are believed from the gateway's own address only.
        assert env_seen["TRUSTED_PROXIES"] == cluster.GATEWAY_SOURCE_ADDRESS
        if redis_url:
            assert env_seen["REDIS_URL"] == redis_url
        else:
            assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", env_seen["REDIS_URL"])
    assert ("EMBEDDED FAKE" in running.output) is (redis_url is None)
    assert f"gateway ({'nginx' if gateway_kind == 'nginx' else 'python fallback'})" in (
        running.output
    )

    running.process.send_signal(stop_signal)
    assert running.wait_exit() == 0, running.output
    assert not any(port_open(port) for port in ports.values()), running.output


def test_cluster_stops_everything_when_a_child_dies(start_cluster: Any) -> None:
    running = start_cluster("python")
    running.wait_ready()
    base = f"http://127.0.0.1:{running.ports['gateway']}"
    auth_pid = httpx.post(f"{base}/users", trust_env=False).json()["pid"]
    os.kill(auth_pid, signal.SIGKILL)
    assert running.wait_exit() != 0
    assert "auth exited unexpectedly (killed by SIGKILL)" in running.output
    assert not any(port_open(port) for port in running.ports.values()), running.output


def test_cluster_fails_clearly_on_unreachable_redis(start_cluster: Any) -> None:
    running = start_cluster("python", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert running.wait_exit() == 1
    assert "does not answer PING" in running.output


def test_cluster_reports_a_service_that_cannot_start(start_cluster: Any) -> None:
    running = start_cluster("python", auth_app="standin:broken")
    assert running.wait_exit() == 1
    assert "auth exited (code 1) before it was ready" in running.output
    assert "stand-in refuses to start" in running.output  # the child's last output


def test_the_helpers_ports_are_never_the_services_own() -> None:
    """The mail sink, the embedded Redis and the gateway's extra listeners take
    free ports before the services bind theirs: never one of those."""
    ports = ["--gateway-port", "18000", "--auth-port", "18001", "--user-port", "18002"]
    args = cluster.parse_args([*ports, "--replicas", "2", "--gateway-metrics-port", "0"])
    own = cluster.own_ports(args)
    assert own == {18000, 18001, 18011, 18002, 18012}
    assert {args.gateway_internal_port, args.gateway_metrics_port}.isdisjoint(own)
    # Every port the kernel hands out for bind(0) is taken but a window of
    # 1,000: the picks must come from the window, each once.
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    window = set(range(low + 2000, low + 3000))
    taken = set(range(low, high + 1)) - window
    picked = [cluster.free_port("127.0.0.1", taken) for _ in range(20)]
    assert len(set(picked)) == len(picked)
    assert window.issuperset(picked)
    assert taken.issuperset(picked)
