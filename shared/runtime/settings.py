"""Settings helpers both services build on.

Each service defines one pydantic-settings class deriving from
`CommonSettings`, builds it in `create_app` and validates it at start. This
module owns no settings instance.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.runtime.redis_topology import DEFAULT_REDIS_URL, RedisTopology, parse_addresses

__all__ = ["CommonSettings", "ProductionConfigError"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProductionConfigError(ValueError):
    """A setting that is fine for a laptop is unsafe in production."""


_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)
# Passwords that example files and tutorials ship: never real secrets.
_PLACEHOLDER_PASSWORDS = frozenset({"changeme", "change-me", "password", "postgres", "redis"})


def _is_placeholder(password: str) -> bool:
    return password.lower() in _PLACEHOLDER_PASSWORDS or password.upper().startswith("CHANGE-ME")


def _secret_problems(name: str, url: str) -> list[str]:
    """Why the credentials in a backend URL are not production secrets ([] if they are).

    A server without a password (the Redis default) or with a placeholder one
    from an example file is one network hop away from anyone. The password
    itself never appears in the message.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return [f"{name} is not a valid URL"]
    if not password:
        return [f"{name} must carry a password"]
    if _is_placeholder(password):
        return [f"{name} carries a placeholder password from an example file"]
    return []


class CommonSettings(BaseSettings):
    # hide_input_in_errors: a refusal must not echo the settings it read,
    # which hold secrets (passwords in REDIS_URL / DATABASE_URL /
    # REDIS_PASSWORD, TOTP_ENCRYPTION_KEY).
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    env: Literal["development", "production", "test"] = "development"
    database_url: str = ""
    # Redis: exactly one of REDIS_URL, REDIS_SENTINELS (+ REDIS_SENTINEL_MASTER)
    # and REDIS_CLUSTER_NODES; none set means the default one-server URL
    # (shared/runtime/redis_topology.py, docs/OPERATIONS.md "Redis topologies").
    redis_url: str = ""
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    redis_cluster_nodes: str = ""
    # Data-node credentials and TLS for Sentinel and Cluster (a REDIS_URL
    # carries its own: `rediss://user:pw@host/0?ssl_ca_certs=...`).
    redis_username: str = ""
    redis_password: str = ""
    redis_sentinel_password: str = ""
    redis_tls: bool = False
    redis_tls_ca_file: str = ""
    redis_tls_check_hostname: bool = True
    # After a write whose loss would undo a security decision (logout, a
    # revocation, a refresh rotation or reuse mark), wait for this many
    # replicas to hold it (WAIT), at most REDIS_WAIT_TIMEOUT_MS; fewer acks
    # and the request fails closed with 503 (shared/runtime/redis_durable.py).
    redis_min_replicas_ack: int = Field(default=0, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=500, ge=10, le=10_000)
    redis_prefix: str = Field(default="idp:", pattern=r"^[A-Za-z0-9:_.-]{1,64}$")
    issuer: str = "http://localhost:8000"
    api_audience: str = "user-service"
    # Peers whose X-Forwarded-For we believe: the gateway's own address, and
    # nothing else. Anyone else could forge the header to dodge per-IP rate
    # limits or poison the audit trail. Empty (the default): nobody, not even
    # loopback, where any local process could call the service port directly.
    trusted_proxies: str = ""
    # Browser origins (scheme://host[:port], comma-separated) allowed to call
    # the API cross-origin. Empty: none (same-origin pages, like the passkey
    # page behind the gateway, need no CORS). "*" only outside production.
    cors_origins: str = ""
    docs_enabled: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    log_level: str = "INFO"
    # Observability (docs/SECURITY_TEAM.md). Both switches exist so the
    # benchmark can measure what instrumentation costs; audit events are
    # never switched off.
    metrics_enabled: bool = True
    tracing_enabled: bool = True
    # A successful SQL statement gets a span only when it took at least this
    # long (failed ones always do); 0: every statement. Fast statements told
    # nothing the request's span does not, at twice the export cost
    # (shared/observability/sql_spans.py).
    tracing_sql_min_ms: float = Field(default=10.0, ge=0)
    # OTLP/HTTP base URL (".../v1/traces" is appended); empty: nothing is exported.
    otel_exporter_otlp_endpoint: str = ""
    # Audit events as JSON lines on stdout (the database copy is always written).
    audit_stdout: bool = True

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            ipaddress.ip_network(part, strict=False)
        return v

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, v: str) -> str:
        for origin in filter(None, (o.strip() for o in v.split(","))):
            # An origin is exactly what a browser sends in `Origin:`; a path
            # or trailing slash would never match and silently allow nothing.
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"CORS_ORIGINS: expected scheme://host[:port], got {origin!r}")
        return v

    @model_validator(mode="after")
    def _one_redis(self) -> CommonSettings:
        self.redis_topology  # noqa: B018 - raises ValueError on an ambiguous setting
        return self

    @property
    def redis_topology(self) -> RedisTopology:
        """The one Redis these settings name.

        Raises:
            ValueError: more than one topology named, or one half-named.
        """
        named = [
            name
            for name, value in (
                ("REDIS_URL", self.redis_url),
                ("REDIS_SENTINELS", self.redis_sentinels),
                ("REDIS_CLUSTER_NODES", self.redis_cluster_nodes),
            )
            if value.strip()
        ]
        if len(named) > 1:
            raise ValueError(
                "set exactly one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES; "
                f"got {' and '.join(named)}"
            )
        if bool(self.redis_sentinels.strip()) != bool(self.redis_sentinel_master.strip()):
            raise ValueError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together")
        node: dict[str, Any] = {
            "username": self.redis_username,
            "password": self.redis_password,
            "tls": self.redis_tls,
            "tls_ca_file": self.redis_tls_ca_file,
            "tls_check_hostname": self.redis_tls_check_hostname,
        }
        if self.redis_sentinels.strip():
            return RedisTopology(
                "sentinel",
                addresses=tuple(parse_addresses(self.redis_sentinels, setting="REDIS_SENTINELS")),
                master_name=self.redis_sentinel_master.strip(),
                sentinel_password=self.redis_sentinel_password,
                **node,
            )
        if self.redis_cluster_nodes.strip():
            return RedisTopology(
                "cluster",
                addresses=tuple(
                    parse_addresses(self.redis_cluster_nodes, setting="REDIS_CLUSTER_NODES")
                ),
                **node,
            )
        # One server: its URL carries credentials and TLS options, and two
        # places for one option would be ambiguous.
        stray = [
            name
            for name, value in (
                ("REDIS_USERNAME", self.redis_username),
                ("REDIS_PASSWORD", self.redis_password),
                ("REDIS_SENTINEL_PASSWORD", self.redis_sentinel_password),
                ("REDIS_TLS", self.redis_tls),
                ("REDIS_TLS_CA_FILE", self.redis_tls_ca_file),
                ("REDIS_TLS_CHECK_HOSTNAME", not self.redis_tls_check_hostname),
            )
            if value
        ]
        if stray:
            raise ValueError(
                f"{', '.join(stray)} apply to Sentinel and Cluster only; with REDIS_URL put "
                "credentials and TLS options in the URL (rediss://user:pw@host/0?ssl_ca_certs=...)"
            )
        url = self.redis_url.strip() or DEFAULT_REDIS_URL
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("REDIS_URL: expected redis://, rediss:// or unix://")
        return RedisTopology("url", url=url)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(
            ipaddress.ip_network(p.strip(), strict=False)
            for p in self.trusted_proxies.split(",")
            if p.strip()
        )

    @property
    def issuer_is_https(self) -> bool:
        """The public origin is https: responses carry HSTS (RFC 6797)."""
        return self.issuer.startswith("https://")

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
        if not self.database_url.startswith("postgresql"):
            problems.append("DATABASE_URL must point at PostgreSQL")
        else:
            problems += _secret_problems("DATABASE_URL", self.database_url)
        if not self.issuer.startswith("https://"):
            problems.append("ISSUER must be an https URL")
        topology = self.redis_topology
        if topology.kind == "url":
            problems += _secret_problems("REDIS_URL", topology.url)
        elif not self.redis_password:
            problems.append("REDIS_PASSWORD must be set for Sentinel and Cluster")
        elif _is_placeholder(self.redis_password):
            problems.append("REDIS_PASSWORD is a placeholder from an example file")
        origins = self.cors_origin_list
        if "*" in origins:
            problems.append("CORS_ORIGINS must list origins, not '*'")
        if any(not o.startswith("https://") for o in origins if o != "*"):
            problems.append("CORS_ORIGINS must be https origins")
        if problems:
            raise ProductionConfigError("unsafe production settings: " + "; ".join(problems))
        return self
