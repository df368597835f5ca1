"""Baseline: a bare FastAPI hello world, the ceiling of any FastAPI endpoint.

Served by the same uvicorn, with the same flags, on the same core as our
services, so the ratio against it isolates what our request path costs.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "Hello World"}
