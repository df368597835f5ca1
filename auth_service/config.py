"""Settings of the auth service (environment variables, see docs/CONTRACTS.md)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from shared.settings import CommonSettings, ProductionConfigError


class AuthSettings(CommonSettings):
    service_name: str = "auth-service"
    database_url: str = "sqlite+aiosqlite:///./.data/auth.db"
    key_dir: Path = Path(".data/keys")
    access_token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=300)
    service_token_ttl_seconds: int = Field(default=120, ge=30, le=600)
    user_service_url: str = "http://127.0.0.1:8002"
    user_service_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    # argon2id cost (OWASP minimum is m=19 MiB, t=2, p=1; the hasher refuses less).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    # Concurrent hashes: one per core. More only queues memory, not throughput.
    hash_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # Rate limits (count per window seconds). Disable only explicitly, for tests.
    rate_limit_enabled: bool = True
    login_ip_limit: int = 30
    login_ip_window_seconds: int = 60
    login_account_limit: int = 10
    login_account_window_seconds: int = 900
    register_ip_limit: int = 10
    register_ip_window_seconds: int = 3600
    refresh_ip_limit: int = 120
    refresh_ip_window_seconds: int = 60
    key_reload_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _auth_production_guard(self) -> AuthSettings:
        if self.is_production and not self.rate_limit_enabled:
            raise ProductionConfigError("RATE_LIMIT_ENABLED must stay true in production")
        return self
