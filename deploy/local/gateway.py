"""Fallback gateway for machines without nginx: a small reverse proxy in Python.

It mirrors deploy/nginx/gateway.conf.template: the same routing table, the same
problem+json answers for what is not routed, the same forwarding headers,
security headers and body limit. It does not rate-limit (the auth service has
its own limits) and is meant for `make run` only, never for production.

With --internal-port it also listens on 127.0.0.1:<port> for the auth
service's calls to the user service (`REPLICAS=2 make run`): every path,
/internal/ included, goes to the user replicas, passing over a dead one, as
the nginx template's internal.conf does. The public listener never routes
/internal/.

Run: python deploy/local/gateway.py --port 8000 \
        --auth-upstream http://127.0.0.1:8001 --user-upstream http://127.0.0.1:8002 \
        [--source-address 127.0.0.2] [--internal-port 8009]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024  # nginx: client_max_body_size 64k

# Same pattern as the nginx map on $http_x_request_id.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# (exact paths, path prefixes) per upstream; "/users" is decided by method.
_AUTH_EXACT = frozenset(
    {
        "/",
        "/login",
        "/login/mfa",
        "/token",
        "/token/refresh",
        "/revoke",
        "/logout",
        "/sessions",
        "/totp",
        # Other applications (OAuth 2.0 / OpenID Connect).
        "/introspect",
        "/authorize",
        "/userinfo",
    }
)
_AUTH_PREFIXES = (
    "/sessions/",
    "/webauthn/",
    "/password/",
    "/email/",
    "/totp/",
    "/.well-known/",
    "/static/",
    "/authorize/",
)
_USER_PREFIXES = ("/users/",)
# Under /users/ but the auth service's: the data export, and deleting the
# account (`DELETE /users/me`; `GET`/`PATCH /users/me` are the profile's).
_AUTH_UNDER_USERS = frozenset({"/users/me/export"})

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

# RFC 9110 section 7.6.1 hop-by-hop headers, plus ones the proxy sets itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_HEADERS_SET_HERE = frozenset(
    {
        "content-length",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-request-id",
    }
    | {
        # Client trace context is dropped, as nginx does (see its template).
        "traceparent",
        "tracestate",
        "baggage",
    }
)
# The internal listener's caller is the auth service: its trace context is its
# own and passes through (nginx: INTERNAL_SERVER in cluster.py).
_KEPT_FROM_SERVICES = frozenset({"traceparent", "tracestate", "baggage"})
# Like nginx, the proxy answers with its own Date and no upstream Server.
_RESPONSE_HEADERS_SET_HERE = frozenset({"date", "server", "x-request-id"}) | set(SECURITY_HEADERS)


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def route(method: str, path: str) -> str | None:
    """Name the upstream ("auth" or "user") for a request, or None when not routed.

    `/internal/...` and `/metrics` are never routed, like any unknown path.
    Paths with dot segments are refused outright: nginx would resolve them
    before matching, this proxy does not rewrite paths.
    """
    if any(segment in {".", ".."} for segment in path.split("/")):
        return None
    if path == "/users":
        return "auth" if method == "POST" else "user"
    if path == "/users/me":
        return "auth" if method == "DELETE" else "user"
    if path in _AUTH_UNDER_USERS:
        return "auth"
    if path in _AUTH_EXACT or path.startswith(_AUTH_PREFIXES):
        return "auth"
    if path.startswith(_USER_PREFIXES):
        return "user"
    return None


def internal_route(path: str) -> str | None:
    """The internal listener's routing: everything to the user service, but
    dot segments are refused there too (nginx resolves them before matching)."""
    if any(segment in {".", ".."} for segment in path.split("/")):
        return None
    return "user"


def forwarded_for(address: str) -> str:
    """RFC 7239 `Forwarded: for=...`; an IPv6 address quoted and bracketed (section 6)."""
    return f'for="[{address}]"' if ":" in address else f"for={address}"


def problem_body(status: int, title: str) -> bytes:
    """RFC 9457 body, byte for byte what the nginx config returns."""
    document = {"type": "about:blank", "title": title, "status": status}
    return json.dumps(document, separators=(",", ":")).encode()


class Gateway:
    """The ASGI app. `client` is injectable so tests can route to in-process apps."""

    def __init__(
        self,
        *,
        auth_upstream: str,
        user_upstream: str,
        client: httpx.AsyncClient | None = None,
        source_address: str | None = None,
        internal: bool = False,
    ) -> None:
        # Each may be a comma-separated list (`REPLICAS=2 make run`): requests
        # go round robin, and one that cannot connect tries the next replica,
        # as nginx's `proxy_next_upstream error` does. Nothing was sent then,
        # so even a POST is safe to pass on.
        self._upstreams = {
            name: [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
            for name, value in (("auth", auth_upstream), ("user", user_upstream))
        }
        self._turn = {"auth": 0, "user": 0}
        # internal: the loopback listener for service-to-service calls (module doc).
        self._internal = internal
        self._dropped = (
            _REQUEST_HEADERS_SET_HERE - _KEPT_FROM_SERVICES
            if internal
            else _REQUEST_HEADERS_SET_HERE
        )
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture
        # traffic to the local services. source_address, like nginx's
        # proxy_bind: the address the services believe forwarded headers from.
        self._client = client or httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=source_address),
            timeout=httpx.Timeout(30.0, connect=5.0),
            trust_env=False,
            follow_redirects=False,
        )
        # The client is shared by every user of the gateway: it must never keep
        # one user's Set-Cookie and replay it for the next (block every domain).
        self._client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets are not part of this API
            return
        request_headers = [(k.decode("latin-1").lower(), v) for k, v in scope["headers"]]
        client_request_id = _header(request_headers, "x-request-id")
        request_id = (
            client_request_id
            if client_request_id and _SAFE_REQUEST_ID.fullmatch(client_request_id)
            else uuid.uuid4().hex
        )

        async def answer(status: int, title: str) -> None:
            body = problem_body(status, title)
            headers = [("content-type", "application/problem+json")]
            await _respond(send, status, headers, body, request_id)

        method, path = scope["method"], scope["path"]
        if path == "/healthz" and not self._internal:
            health = b'{"status":"ok"}'
            await _respond(send, 200, [("content-type", "application/json")], health, request_id)
            return
        upstream = internal_route(path) if self._internal else route(method, path)
        if upstream is None:
            await answer(404, "Not Found")
            return

        declared = _header(request_headers, "content-length")
        # The server (h11/httptools) has already refused a malformed length.
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await answer(413, "Content Too Large")
            return
        try:
            body = await _read_body(receive)
        except _ClientGone:
            return
        if body is None:
            await answer(413, "Content Too Large")
            return

        peer = scope.get("client") or ("", 0)
        host = _header(request_headers, "host") or ""
        headers = [
            (k, v) for k, v in request_headers if k not in _HOP_BY_HOP and k not in self._dropped
        ]
        headers += [
            # The edge REPLACES the client address headers with the peer, as
            # nginx does: what a client sent there is never passed on.
            ("x-forwarded-for", peer[0]),
            ("forwarded", forwarded_for(peer[0])),
            ("x-forwarded-proto", scope.get("scheme", "http")),
            ("x-forwarded-host", host),
            ("x-real-ip", peer[0]),
            ("x-request-id", request_id),
        ]
        # The raw path goes upstream unchanged, as nginx's proxy_pass does.
        raw_path = scope.get("raw_path") or path.encode()
        target = raw_path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        replicas = self._upstreams[upstream]
        first = self._turn[upstream] = (self._turn[upstream] + 1) % len(replicas)
        for attempt in range(len(replicas)):
            base = replicas[(first + attempt) % len(replicas)]
            # httpx.Request, not client.build_request(): the latter would add the
            # client's default headers (Accept-Encoding: gzip, User-Agent, ...).
            request = httpx.Request(method, base + target, headers=headers, content=body)
            try:
                response = await self._client.send(request, stream=True)
                break
            except httpx.ConnectError:
                if attempt + 1 < len(replicas):
                    continue  # nothing reached that replica: the next one may answer
                await answer(502, "Bad Gateway")
                return
            except httpx.TimeoutException:
                await answer(504, "Gateway Timeout")
                return
            except httpx.TransportError:
                await answer(502, "Bad Gateway")
                return
        else:  # pragma: no cover - the loop always breaks or returns
            return
        try:
            response_headers = [
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw
            ]
            response_headers = [
                (k, v)
                for k, v in response_headers
                if k not in _HOP_BY_HOP and k not in _RESPONSE_HEADERS_SET_HERE
            ]
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _encode(_with_gateway_headers(response_headers, request_id)),
                }
            )
            # aiter_raw: bytes as the upstream sent them (content-encoding kept).
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await _lifespan(receive, send, self)


async def _lifespan(receive: Receive, send: Send, *gateways: Gateway) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for gateway in gateways:
                await gateway.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


class Listeners:
    """One process, two listeners: requests that came in on the internal port
    (the socket's own address, not anything the client sent) go to the
    internal gateway, all others to the public one."""

    def __init__(self, public: Gateway, internal: Gateway, internal_port: int) -> None:
        self._public, self._internal, self._internal_port = public, internal, internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._public, self._internal)
            return
        server = scope.get("server") or ("", 0)
        internal = server[0] == "127.0.0.1" and server[1] == self._internal_port
        await (self._internal if internal else self._public)(scope, receive, send)


def _header(headers: list[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None once it passes the limit (chunked uploads)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _with_gateway_headers(headers: list[tuple[str, str]], request_id: str) -> list[tuple[str, str]]:
    return [*headers, *SECURITY_HEADERS.items(), ("x-request-id", request_id)]


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _respond(
    send: Send, status: int, headers: list[tuple[str, str]], body: bytes, request_id: str
) -> None:
    headers = [*headers, ("content-length", str(len(body)))]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _encode(_with_gateway_headers(headers, request_id)),
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn  # imported here: the module itself needs only httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--auth-upstream", default="http://127.0.0.1:8001")
    parser.add_argument("--user-upstream", default="http://127.0.0.1:8002")
    parser.add_argument(
        "--source-address",
        default=None,
        help="local address to connect to the services from (the one they trust)",
    )
    parser.add_argument(
        "--internal-port",
        type=int,
        default=None,
        help="also listen on 127.0.0.1:PORT for service-to-service calls to the user service",
    )
    args = parser.parse_args()

    def gateway(*, internal: bool) -> Gateway:
        return Gateway(
            auth_upstream=args.auth_upstream,
            user_upstream=args.user_upstream,
            source_address=args.source_address,
            internal=internal,
        )

    public = gateway(internal=False)
    # proxy_headers=False: this process IS the proxy; the client address must be
    # the socket peer, never an X-Forwarded-For a local client made up.
    # server_header=False: no "server: uvicorn" (nginx runs with server_tokens off).
    options: dict[str, Any] = {"proxy_headers": False, "server_header": False, "log_level": "info"}
    if args.internal_port is None:
        uvicorn.run(public, host=args.host, port=args.port, **options)
        return
    # One server on two sockets (two servers would fight over the signal handlers).
    app = Listeners(public, gateway(internal=True), args.internal_port)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sockets = [
        socket.create_server((args.host, args.port), family=family),
        socket.create_server(("127.0.0.1", args.internal_port)),
    ]
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=sockets)


if __name__ == "__main__":
    main()
