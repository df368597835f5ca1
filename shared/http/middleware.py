"""Pure ASGI middleware for the edge of both services.

Pure ASGI (not Starlette's BaseHTTPMiddleware) because it runs on every
request: no extra task per request, no buffering of streaming bodies.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.problems import PROBLEM_JSON

__all__ = ["HSTS", "RequestContextMiddleware", "client_ip", "request_id"]

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# A generator of our own, seeded from the OS: drawing ids leaves the global
# `random` state (which libraries and test tools seed and check) untouched.
_IDS = random.Random()  # noqa: S311 - ids correlate logs, they guard nothing


def _new_request_id() -> str:
    """32 hex digits, as uuid4().hex was, from a `random.Random`.

    A request id correlates logs; it guards nothing, so it needs no CSPRNG
    (OpenTelemetry draws trace ids the same way). `uuid4` costs an
    `os.urandom` system call per request: ~20 µs in this VM, a tenth of a
    profile read's whole cost (bench/README.md).
    """
    return f"{_IDS.getrandbits(128):032x}"


def request_id(scope: Scope) -> str:
    """The request id the middleware chose for this request."""
    return str(scope.get("state", {}).get("request_id", ""))


def client_ip(scope: Scope) -> str:
    """The client address, believed from X-Forwarded-For only via trusted proxies."""
    return str(scope.get("state", {}).get("client_ip", ""))


def _in(ip: str, networks: Iterable[IPNetwork]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


def resolve_client_ip(peer: str, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]) -> str:
    """Walk X-Forwarded-For from the right, skipping trusted proxies.

    The right-most address a trusted proxy appended is the first one we can
    believe; anything to its left was written by the client and can be forged.
    """
    if not forwarded_for or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage in the chain: fall back to what we saw
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


# Set on every response, errors included, unless the route set its own.
# The gateway sets the same three; it hides the services' copies
# (proxy_hide_header) so each appears once, and the services still carry
# them when reached directly (a Kubernetes Service, a port-forward, /docs).
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# JSON is never rendered as a page: forbid everything (OWASP REST Security
# Cheat Sheet). HTML routes (the passkey page, Swagger UI) set their own CSP
# or none, so this is added only to JSON responses.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# RFC 6797 HSTS, only when the public origin (the issuer) is https: sent for an
# http issuer it would pin a browser to https on, say, localhost. Two years and
# subdomains, as the gateway's TLS block sends it (and hstspreload.org asks).
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


def _security_headers(
    raw: list[tuple[bytes, bytes]], names: set[bytes]
) -> list[tuple[bytes, bytes]]:
    extra = [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
    ctype = next((v for k, v in raw if k.lower() == b"content-type"), b"").lower()
    media = ctype.split(b";", 1)[0].strip()
    is_json = media == b"application/json" or media.endswith(b"+json")
    if is_json and b"content-security-policy" not in names:
        extra.append(_API_CSP)
    return extra


class RequestContextMiddleware:
    """Request id, client IP, body-size limit and default response headers.

    Args:
        app: the wrapped ASGI app.
        trusted_proxies: networks whose X-Forwarded-For is believed.
        max_body_bytes: larger bodies get 413 before any parsing.
        hsts: send Strict-Transport-Security (the issuer is https).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: tuple[IPNetwork, ...],
        max_body_bytes: int,
        hsts: bool = False,
    ) -> None:
        self.app = app
        self.trusted = trusted_proxies
        self.max_body = max_body_bytes
        self.always: tuple[tuple[bytes, bytes], ...] = (HSTS,) if hsts else ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        if not _SAFE_REQUEST_ID.match(rid):
            rid = _new_request_id()  # never reflect an unsafe client value into logs
        peer = scope["client"][0] if scope.get("client") else ""
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["client_ip"] = resolve_client_ip(peer, headers.get("x-forwarded-for"), self.trusted)

        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._too_large(send, rid)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                raw: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                raw.append((b"x-request-id", rid.encode()))
                # Identity responses carry personal data and tokens: no caching
                # anywhere unless the route said otherwise (JWKS, static page).
                if b"cache-control" not in names:
                    raw.append((b"cache-control", b"no-store"))
                raw.extend(_security_headers(raw, names))
                raw.extend(h for h in self.always if h[0] not in names)
                message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not response_started:
                await self._too_large(send, rid)

    async def _too_large(self, send: Send, rid: str) -> None:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"Request bodies are limited to {self.max_body} bytes.",
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-request-id", rid.encode()),
                    (b"cache-control", b"no-store"),
                    (b"connection", b"close"),
                    *_SECURITY_HEADERS,
                    _API_CSP,
                    *self.always,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class _BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without Content-Length outgrows the cap.

    An HTTPException, not a plain Exception: FastAPI's body reader turns any
    other exception into "400 There was an error parsing the body", so a
    chunked upload past the limit answered 400 instead of 413. FastAPI
    re-raises HTTPExceptions untouched and the problem handlers render it.
    """

    def __init__(self) -> None:
        super().__init__(413, headers={"Connection": "close"})
