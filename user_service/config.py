"""Settings of the user service (environment variables, see docs/CONTRACTS.md)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class UserSettings(CommonSettings):
    service_name: str = "user-service"
    database_url: str = "sqlite+aiosqlite:///./.data/user.db"
    # The only key source this service trusts (docs/ARCHITECTURE.md, "Tokens": never jku/x5u/jwk).
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwks_cache_ttl_seconds: float = Field(default=300.0, gt=0)
    jwks_min_refetch_seconds: float = Field(default=10.0, ge=0)
    jwks_timeout_seconds: float = Field(default=2.0, gt=0)
    token_leeway_seconds: int = Field(default=10, ge=0, le=120)
    service_client_id: str = "auth-service"
