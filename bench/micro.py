"""In-process microbenchmarks, each next to its raw-library baseline.

Run by the harness with the *project's* interpreter (not the bench overlay)
and pinned to the server core, it prints one JSON object:

- `verify_raw_s`: raw `cryptography` RSA-2048 PKCS#1 v1.5 SHA-256 verify;
- `verify_ours_s`: `shared.tokens.verify.TokenVerifier.verify` on a real access token,
  the verified-token cache off: the full cost of a token seen for the first time;
- `verify_repeat_s`: the same with the cache on (the default), the same token
  again: what every request after a client's first one with that token costs;
- `verify_pyjwt_s`: `jwt.decode` with the same checks (the pre-optimisation path);
- `sign_raw_s`: raw RSA-2048 sign; `sign_ours_s`: `KeyRing.sign`;
- `argon2_verify_s`: one argon2-cffi verify at our configured parameters,
  the fastest; `argon2_verify_median_s` and `argon2_samples` too (target 3
  sets a login's p50 against the median of the samples, like with like).

Each contender runs in many short batches, interleaved round-robin, and each
figure is the *fastest* batch's time per call: on a shared machine noise only
ever adds time (preemption, cache thrash), so the minimum is the estimate
least distorted by it, and interleaving exposes every contender to the same
quiet moments. Medians are kept in the output too.

    python -m bench.micro [--rounds 40] [--min-round-seconds 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import argon2
import jwt
from argon2.low_level import Type
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from auth_service.config import AuthSettings
from auth_service.keys import KeyRing
from shared.tokens.claims import AccessClaims
from shared.tokens.verify import TokenVerifier

ISSUER = "http://localhost:8000"
AUDIENCE = "user-service"


class _StaticKeys:
    def __init__(self, keys: dict[str, RSAPublicKey]) -> None:
        self._keys = keys

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        return self._keys.get(kid)


def _time_sync(fn: Callable[[], object], min_seconds: float) -> float:
    """Mean seconds per call over a batch lasting at least `min_seconds`."""
    n, batch = 0, 16
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / n
        batch *= 2


async def _time_async(fn: Callable[[], Awaitable[object]], min_seconds: float) -> float:
    n, batch = 0, 16
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            await fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / n
        batch *= 2


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "idp-web",
        "scope": "openid profile",
        "sid": uuid.uuid4().hex,
        "roles": [],
        "amr": ["pwd"],
        "auth_time": now,
    }


async def run(rounds: int, min_round: float, argon2_rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing.load(Path(tmp) / "keys", generate_if_missing=True)
    key = ring.current_signing_key()
    private, public = key.private_key, key.private_key.public_key()
    token = ring.sign(_claims())
    signing_input, _, sig_b64 = token.rpartition(".")
    message = signing_input.encode()
    signature = jwt.utils.base64url_decode(sig_b64)
    # First sight: the cache off, so every call runs the full verification.
    verifier = TokenVerifier(
        key_source=_StaticKeys({key.kid: public}),
        expected_issuer=ISSUER,
        expected_audience=AUDIENCE,
        verified_cache_size=0,
    )
    repeat = TokenVerifier(
        key_source=_StaticKeys({key.kid: public}),
        expected_issuer=ISSUER,
        expected_audience=AUDIENCE,
    )
    await verifier.verify(token)  # a failure here is a harness bug, not a result
    await repeat.verify(token)

    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "verify_raw_s",
            "verify_ours_s",
            "verify_repeat_s",
            "verify_pyjwt_s",
            "verify_floor_s",
            "sign_raw_s",
            "sign_ours_s",
        )
    }
    if rounds == 0:  # --rounds 0: the argon2 baseline only (target 3 re-measures it)
        samples = {}
    options: Any = {"require": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]}
    claims = _claims()

    def floor() -> None:
        # The least any verifier of this token does, with none of the
        # contract's checks: split, decode two segments, the RSA verify, one
        # parse and validation of the claims.
        header, payload, sig = token.split(".")
        public.verify(_b64url(sig), f"{header}.{payload}".encode(), pkcs1, sha256)
        AccessClaims.model_validate_json(_b64url(payload))

    for _ in range(rounds):
        samples["verify_raw_s"].append(
            _time_sync(lambda: public.verify(signature, message, pkcs1, sha256), min_round)
        )
        samples["verify_ours_s"].append(
            await _time_async(lambda: verifier.verify(token), min_round)
        )
        samples["verify_repeat_s"].append(
            await _time_async(lambda: repeat.verify(token), min_round)
        )
        samples["verify_pyjwt_s"].append(
            _time_sync(
                lambda: jwt.decode(
                    token,
                    public,
                    algorithms=["RS256"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    leeway=10,
                    options=options,
                ),
                min_round,
            )
        )
        samples["verify_floor_s"].append(_time_sync(floor, min_round))
        samples["sign_raw_s"].append(
            _time_sync(lambda: private.sign(message, pkcs1, sha256), min_round)
        )
        samples["sign_ours_s"].append(_time_sync(lambda: ring.sign(claims), min_round))

    # argon2 at the parameters the auth service is configured with (its own
    # settings class, so a change of defaults moves the baseline with it).
    settings = AuthSettings()
    hasher = argon2.PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )
    password = b"correct horse battery staple"
    stored = hasher.hash(password)
    # One verify uncounted: the first one after the hash faults its 12 MiB
    # block in afresh (~5 ms more), which the service's long-lived hashing
    # thread has long since done.
    hasher.verify(stored, password)
    argon2_times = []
    for _ in range(argon2_rounds):
        start = time.perf_counter()
        hasher.verify(stored, password)
        argon2_times.append(time.perf_counter() - start)

    result: dict[str, Any] = {k: min(v) for k, v in samples.items()}
    result["medians"] = {k: statistics.median(v) for k, v in samples.items()}
    result["samples"] = samples
    result["argon2_verify_s"] = min(argon2_times)
    result["argon2_verify_median_s"] = statistics.median(argon2_times)
    result["argon2_samples"] = argon2_times
    result["argon2_params"] = {
        "time_cost": settings.argon2_time_cost,
        "memory_kib": settings.argon2_memory_kib,
        "parallelism": settings.argon2_parallelism,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--min-round-seconds", type=float, default=0.02)
    parser.add_argument("--argon2-rounds", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.rounds, args.min_round_seconds, args.argon2_rounds))))


if __name__ == "__main__":
    main()
