"""HSTS (RFC 6797) when the issuer is https, never when it is http.

Browsers pin the origin to https for `max-age` seconds: it must be at least a
year and cover subdomains (OWASP HTTP Headers Cheat Sheet), and it must never
be sent for an http issuer (it would pin localhost to https). Checked on both
services in-process, and on the gateway's TLS server block with real nginx
and a self-signed certificate made here.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.abuse.test_abuse_transport import _load_cluster
from tests.conftest import Services, start_services
from tests.e2e.processes import free_port
from tests.support.tls import write_self_signed

ONE_YEAR = 365 * 24 * 3600
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "gateway.conf.template"


def _assert_hsts(response: httpx.Response) -> None:
    values = response.headers.get_list("strict-transport-security")
    assert len(values) == 1, values
    found = re.fullmatch(r"max-age=(\d+); includeSubDomains", values[0])
    assert found, values[0]
    assert int(found.group(1)) >= ONE_YEAR


# --- the services ---------------------------------------------------------------------


@pytest.fixture(params=["https://idp.example.com", "http://localhost:8000"])
async def services(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    issuer = {"issuer": request.param}
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls, auth=issuer, user=issuer
    ):
        yield s


@pytest.mark.anyio
async def test_services_send_hsts_exactly_when_the_issuer_is_https(services: Services) -> None:
    answers = [
        await services.auth.get("/.well-known/jwks.json"),  # 200
        await services.auth.post("/login", json={}),  # 422
        await services.auth.post("/users", content=b"x" * (64 * 1024 + 1)),  # 413
        await services.user.get("/users/me"),  # 401
        await services.user.get("/nowhere"),  # 404
    ]
    if services.auth_settings.issuer.startswith("https://"):
        for response in answers:
            _assert_hsts(response)
    else:
        for response in answers:
            assert "strict-transport-security" not in response.headers


# --- the gateway's TLS server block ----------------------------------------------------


def _self_signed(directory: Path) -> None:
    """certs/fullchain.pem and certs/privkey.pem for 127.0.0.1, as the TLS block expects."""
    write_self_signed(directory / "certs" / "fullchain.pem", directory / "certs" / "privkey.pem")


def _with_tls_block(config: str, *, port: int, http2: bool) -> str:
    """The rendered config with its commented TLS server block switched on, as
    an operator would: uncommented, on `port`, with one proxied location."""
    lines = config.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# server {")
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "# }")
    block = []
    for line in lines[start : end + 1]:
        text = line.strip().removeprefix("#").strip()
        if text.startswith("# ..."):  # "# ... same locations as the plain server ..."
            text = "location / { proxy_pass http://auth_service; }\n"
            text += "location = /nowhere { return 404; }"
        if text.startswith("listen 443"):
            text = f"listen 127.0.0.1:{port} ssl;"
        if text == "http2 on;" and not http2:
            continue  # nginx before 1.25.1 has no `http2` directive
        block.append(text)
    return "\n".join([*lines[:start], *block, *lines[end + 1 :]]) + "\n"


@contextlib.contextmanager
def _hsts_upstream() -> Iterator[int]:
    """An upstream that sends its own HSTS, as the services do for an https issuer."""
    from tests.e2e.test_cluster_script import ThreadedServer

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = [
            (b"content-type", b"application/json"),
            (b"strict-transport-security", b"max-age=1"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    with ThreadedServer(app) as server:
        yield server.port


@pytest.fixture
def tls_gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    cluster = _load_cluster()
    nginx = cluster.find_nginx()
    assert nginx, "nginx is not installed: apt-get install nginx (.ci/run does it)"
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    http2 = found is not None and tuple(int(p) for p in found.groups()) >= (1, 25, 1)
    plain, tls = free_port(), free_port()
    with _hsts_upstream() as upstream:
        config = cluster.render_gateway_config(
            tmp_path,
            auth_upstream=f"127.0.0.1:{upstream}",
            user_upstream=f"127.0.0.1:{upstream}",
            listen=f"127.0.0.1:{plain}",
        )
        config.write_text(_with_tls_block(config.read_text(), port=tls, http2=http2))
        _self_signed(tmp_path)
        with (tmp_path / "nginx.out").open("wb") as out:
            proc = subprocess.Popen(
                cluster.nginx_command(nginx, tmp_path), stdout=out, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{plain}/healthz", timeout=1).is_success:
                        break
                assert proc.poll() is None, (tmp_path / "nginx.out").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
            yield f"https://127.0.0.1:{tls}", f"http://127.0.0.1:{plain}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_gateway_tls_block_sends_hsts_once(tls_gateway: tuple[str, str]) -> None:
    https, _ = tls_gateway
    with httpx.Client(verify=False, trust_env=False) as client:  # noqa: S501 - our self-signed cert
        proxied = client.get(f"{https}/.well-known/jwks.json")
        own = client.get(f"{https}/nowhere")  # an answer of the gateway's own
    assert proxied.status_code == 200, proxied.text
    assert own.status_code == 404
    # The gateway's value, not the upstream's max-age=1 as well.
    _assert_hsts(proxied)
    _assert_hsts(own)


def test_gateway_plain_server_adds_no_hsts(tls_gateway: tuple[str, str]) -> None:
    _, http = tls_gateway
    own = httpx.get(f"{http}/nowhere", trust_env=False)
    assert "strict-transport-security" not in own.headers
