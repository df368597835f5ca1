"""Settings helpers both services build on.

Each service defines one pydantic-settings class deriving from
`CommonSettings`, builds it in `create_app` and validates it at start. This
module owns no settings instance.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CommonSettings", "ProductionConfigError"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProductionConfigError(ValueError):
    """A setting that is fine for a laptop is unsafe in production."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    env: Literal["development", "production", "test"] = "development"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = Field(default="idp:", pattern=r"^[A-Za-z0-9:_.-]{1,64}$")
    issuer: str = "http://localhost:8000"
    api_audience: str = "user-service"
    # Peers whose X-Forwarded-For we believe (the gateway). Anyone else could
    # forge the header to dodge per-IP rate limits or poison the audit trail.
    trusted_proxies: str = "127.0.0.1,::1"
    docs_enabled: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            ipaddress.ip_network(part, strict=False)
        return v

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.trusted_proxies.split(",")
            if p.strip()
        )

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @model_validator(mode="after")
    def _production_guard(self) -> CommonSettings:
        if not self.is_production:
            return self
        problems = []
        if self.docs_enabled:
            problems.append("DOCS_ENABLED must be false")
        if self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL must point at PostgreSQL")
        if not self.issuer.startswith("https://"):
            problems.append("ISSUER must be an https URL")
        if problems:
            raise ProductionConfigError("unsafe production settings: " + "; ".join(problems))
        return self
