"""Settings of the user service (environment variables, see docs/CONTRACTS.md)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.access.revocation import MARKER_OUTLIVES_TOKEN_SECONDS
from shared.runtime.settings import CommonSettings


class UserSettings(CommonSettings):
    service_name: str = "user-service"
    database_url: str = "sqlite+aiosqlite:///./.data/user.db"
    # The only key source this service trusts (docs/ARCHITECTURE.md, "Tokens": never jku/x5u/jwk).
    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwks_cache_ttl_seconds: float = Field(default=300.0, gt=0)
    # Both bounds below are checked by _guarantees_guard, with the reason.
    jwks_min_refetch_seconds: float = 10.0
    jwks_timeout_seconds: float = Field(default=2.0, gt=0)
    token_leeway_seconds: int = Field(default=10, ge=0)
    service_client_id: str = "auth-service"

    @model_validator(mode="after")
    def _guarantees_guard(self) -> UserSettings:
        """Refuse, in every mode, values that silently break a documented guarantee.

        Not a production-only check: a laptop or staging run with these values
        would pass tests of behaviour that production then would not have.
        """
        problems = []
        if self.token_leeway_seconds > MARKER_OUTLIVES_TOKEN_SECONDS:
            # RFC 7519 4.1.4 allows "some small leeway"; ours is bounded by how
            # long revocation markers outlive a token's exp (shared/access/revocation.py).
            problems.append(
                f"TOKEN_LEEWAY_SECONDS={self.token_leeway_seconds} is longer than revocation "
                f"markers outlive a token's exp ({MARKER_OUTLIVES_TOKEN_SECONDS} s): a revoked "
                f"session's tokens would verify again once the marker is gone; use at most "
                f"{MARKER_OUTLIVES_TOKEN_SECONDS}"
            )
        if self.jwks_min_refetch_seconds < 1:
            problems.append(
                f"JWKS_MIN_REFETCH_SECONDS={self.jwks_min_refetch_seconds:g} must be at least 1: "
                "below that every token with a made-up kid costs a JWKS fetch from the auth "
                "service, so a flood of forged tokens becomes a flood of fetches"
            )
        if problems:
            raise ValueError("settings that weaken guarantees: " + "; ".join(problems))
        return self
