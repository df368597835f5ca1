"""A caching JWKS client (RFC 7517 §5) for verifying tokens of one trusted issuer.

Shaped after PyJWT's `PyJWKClient` and its issue history: jpadilla/pyjwt#1162
(a failed refresh wiped the cached set, turning a JWKS blip into a total auth
outage; fixed by #1159), #1051 (keys cached without a TTL are served forever,
even after the issuer withdrew them) and #929 (the refetch on an unknown kid
is driven by attacker-chosen input, so it has to be bounded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from shared.tokens.jwk import public_key_from_jwk
from shared.tokens.verify import KeysUnavailable

__all__ = ["JWKSClient"]

logger = logging.getLogger(__name__)

# A JWKS is a handful of keys; a peer streaming megabytes is broken or hostile.
_MAX_DOCUMENT_BYTES = 256 * 1024


class _FetchError(Exception):
    """A fetch that produced no usable key set (the reason is safe to log)."""


def _usable_keys(document: object) -> dict[str, RSAPublicKey]:
    """Parse the signature keys of a JWK Set, skipping any key we would not verify with.

    Raises:
        _FetchError: the document is not a JWK Set (RFC 7517 §5).
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise _FetchError("expected a JSON object with a 'keys' array")
    keys: dict[str, RSAPublicKey] = {}
    ambiguous: set[str] = set()
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        # Without a kid a key cannot be selected; RFC 7517 §4.2/§4.4: a key
        # marked for encryption or another algorithm must not verify RS256.
        if not isinstance(kid, str) or not kid:
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        try:
            key = public_key_from_jwk(jwk)  # kty RSA, >= 2048 bits
        except ValueError:
            continue
        if kid in keys:
            ambiguous.add(kid)
        keys[kid] = key
    # Two keys under one kid: which one signed is unknowable, so trust neither.
    for kid in ambiguous:
        del keys[kid]
    return keys


class JWKSClient:
    """Fetches and caches the issuer's public keys; implements `shared.tokens.verify.KeySource`.

    Policy:
    - keys live for `cache_ttl_seconds` on a monotonic clock, then are refetched;
    - fetches are single-flight: concurrent callers share one request;
    - an unknown kid refetches at most once per `min_refetch_interval_seconds`,
      so random kids in forged tokens cannot turn into a request flood; one
      that arrives while a fetch is in flight waits for its answer;
    - stale-on-error: a failed fetch keeps the last good set (and is retried at
      most once per interval); only a client that never obtained a set raises
      `KeysUnavailable`.
    """

    def __init__(
        self,
        *,
        url: str,
        http: httpx.AsyncClient,
        cache_ttl_seconds: float = 300.0,
        min_refetch_interval_seconds: float = 10.0,
        timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[str], None] | None = None,
    ) -> None:
        """Configure the client; nothing is fetched until a key is needed or `refresh()`.

        Args:
            url: the JWKS URL, the only key source trusted (RFC 8725 §3.10).
            http: a shared client; its lifetime belongs to the caller.
            cache_ttl_seconds: how long a fetched set is fresh.
            min_refetch_interval_seconds: least time between two fetch attempts
                triggered by unknown kids or by retries after errors.
            timeout_seconds: total deadline of one fetch.
            clock: monotonic seconds; injectable for tests.
            on_fetch: called with "ok" or "error" once per fetch attempt.
        """
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("expected an absolute http(s) JWKS URL")
        self._url = url
        # What logs and errors show: without userinfo or query, which could carry credentials.
        self._safe_url = str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
        self._http = http
        self._ttl = cache_ttl_seconds
        self._min_interval = min_refetch_interval_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._on_fetch = on_fetch
        self._keys: dict[str, RSAPublicKey] | None = None  # None: never obtained
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._generation = 0  # completed fetch attempts, for single-flight
        self._lock = asyncio.Lock()

    def cached_kids(self) -> frozenset[str]:
        """The kids currently cached, fresh or stale."""
        return frozenset(self._keys or ())

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        """The key for `kid`, fetching the set when stale or when the kid is new.

        Args:
            kid: the token header's key id (RFC 7515 §4.1.4).

        Returns:
            The cached parsed key, or None when the issuer does not publish `kid`.

        Raises:
            KeysUnavailable: no key set has ever been obtained.
        """
        keys = self._keys
        if keys is not None:
            now = self._clock()
            key = keys.get(kid)
            if now - self._fetched_at < self._ttl:
                if key is not None:
                    return key  # the hot path: one dict lookup
            elif key is not None and (self._lock.locked() or not self._may_refetch(now)):
                # Stale but known: serve it while another caller refreshes, or
                # while the issuer is failing (stale-on-error, jpadilla/pyjwt#1162).
                return key
            if key is None and not self._lock.locked() and not self._may_refetch(now):
                return None
            # An unknown kid while a fetch is in flight waits for that fetch:
            # it started after our set, so it may carry the kid. Right after a
            # rotation the first new-kid tokens arrive together, and refusing
            # all but the first (the fetch reset the rate limit) would fail
            # valid tokens. Forged kids wait too (at most the fetch's total
            # deadline) but cost no extra request.
        await self._fetch_once()
        if self._keys is None:
            raise KeysUnavailable(f"no key set could be obtained from {self._safe_url}")
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch the key set now (e.g. at start-up), sharing any fetch in flight.

        Raises:
            KeysUnavailable: the fetch failed and no key set was ever obtained.
        """
        await self._fetch_once()
        if self._keys is None:
            raise KeysUnavailable(f"no key set could be obtained from {self._safe_url}")

    def _may_refetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_interval

    async def _fetch_once(self) -> None:
        # Single flight: whoever waited on the lock while another fetch ran
        # uses that result instead of fetching again.
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return
            await self._fetch()

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = await self._download()
        except _FetchError as exc:
            # Reason only: never the body, never credentials in the URL.
            logger.warning("JWKS fetch from %s failed: %s", self._safe_url, exc)
            outcome = "error"
        else:
            self._keys = keys
            self._fetched_at = self._clock()
            outcome = "ok"
        # Counted only on completion: a cancelled fetch lets a waiter try again.
        self._generation += 1
        if self._on_fetch is not None:
            try:
                self._on_fetch(outcome)
            except Exception:
                # A broken metrics hook must not turn into failed authentication.
                logger.exception("JWKS on_fetch callback failed")

    async def _download(self) -> dict[str, RSAPublicKey]:
        try:
            # A total deadline: httpx timeouts are per read, so a slow drip
            # could otherwise hold the lock (and every waiter) indefinitely.
            async with asyncio.timeout(self._timeout):
                # Never follow redirects: a redirect could move the key source
                # to another host (RFC 8725 §3.10).
                async with self._http.stream(
                    "GET",
                    self._url,
                    headers={"Accept": "application/jwk-set+json, application/json"},
                    follow_redirects=False,
                    timeout=self._timeout,
                ) as response:
                    if response.status_code != 200:
                        raise _FetchError(f"expected HTTP 200, got {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > _MAX_DOCUMENT_BYTES:
                            raise _FetchError(f"expected at most {_MAX_DOCUMENT_BYTES} bytes")
        except TimeoutError:
            raise _FetchError(f"no complete answer within {self._timeout}s") from None
        except httpx.HTTPError as exc:
            raise _FetchError(f"transport error {type(exc).__name__}") from None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            raise _FetchError("expected a JSON document") from None
        keys = _usable_keys(document)
        if not keys:
            raise _FetchError("expected at least one usable RS256 signature key")
        return keys
