"""Baseline: the least any token refresh endpoint does, as a FastAPI app (target 5).

One POST with a JSON body, one Redis round trip, one RSA-2048 signature
(PKCS#1 v1.5, SHA-256) over a signing input the size of our access token's,
and a JSON reply. No validation, rotation, audit, roles read or middleware:
the ceiling of refreshes/s for a FastAPI service on this core, measured
beside ours, so target 5's ratio can be read against what is reachable at all.
"""

from __future__ import annotations

import base64
import json
import os

import redis.asyncio as redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI, Request, Response

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PKCS1, _SHA256 = padding.PKCS1v15(), hashes.SHA256()
_SIGNING_INPUT = b"e" * 600  # about our access tokens' header.payload
_PREFIX = os.environ.get("REDIS_PREFIX", "bench:") + "floor:"
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/token/refresh")
async def refresh(request: Request) -> Response:
    body = json.loads(await request.body())
    await _redis.get(_PREFIX + str(body.get("refresh_token", ""))[:16])
    signature = base64.urlsafe_b64encode(_KEY.sign(_SIGNING_INPUT, _PKCS1, _SHA256))
    return Response(
        json.dumps(
            {
                "access_token": signature.rstrip(b"=").decode(),
                "token_type": "Bearer",
                "refresh_token": "f" * 43,
            }
        ),
        media_type="application/json",
    )
