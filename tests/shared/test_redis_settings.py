"""Which Redis the settings name: exactly one topology, refused when ambiguous,
with errors that never echo a credential."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from auth_service.config import AuthSettings
from shared.runtime.settings import CommonSettings, ProductionConfigError
from user_service.config import UserSettings


def test_none_set_is_the_default_one_server() -> None:
    topology = CommonSettings().redis_topology
    assert (topology.kind, topology.url) == ("url", "redis://127.0.0.1:6379/0")


def test_each_topology_is_read() -> None:
    s = CommonSettings(redis_sentinels="10.0.0.1:26379, [::1]:26380", redis_sentinel_master="m")
    assert s.redis_topology.kind == "sentinel"
    assert s.redis_topology.addresses == (("10.0.0.1", 26379), ("::1", 26380))
    c = CommonSettings(redis_cluster_nodes="a:7000,b:7001", redis_password="pw", redis_tls=True)
    assert c.redis_topology.kind == "cluster"
    assert c.redis_topology.tls


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"redis_url": "redis://:s3cret-pw@h/0", "redis_cluster_nodes": "a:1"}, "exactly one"),
        (
            {"redis_sentinels": "a:1", "redis_sentinel_master": "m", "redis_cluster_nodes": "b:2"},
            "exactly one",
        ),
        ({"redis_sentinels": "a:1"}, "go together"),
        ({"redis_sentinel_master": "m"}, "go together"),
        ({"redis_cluster_nodes": "no-port"}, "host:port"),
        ({"redis_cluster_nodes": "a:99999"}, "host:port"),
        ({"redis_url": "redis://h/0", "redis_password": "s3cret-pw"}, "in the URL"),
        ({"redis_tls": True}, "in the URL"),
        ({"redis_url": "http://h/0"}, "redis://"),
    ],
)
def test_ambiguous_or_half_named_redis_is_refused_at_start(
    settings: dict[str, Any], expected: str
) -> None:
    for cls in (AuthSettings, UserSettings):
        with pytest.raises(ValidationError) as info:
            cls(**settings)
        assert expected in str(info.value)
        assert "s3cret-pw" not in str(info.value)


_PRODUCTION: dict[str, Any] = {
    "env": "production",
    "docs_enabled": False,
    "database_url": "postgresql+asyncpg://app:a-long-random-secret@db/app",
    "issuer": "https://id.example.com",
}


def test_production_needs_a_password_on_sentinel_and_cluster() -> None:
    for topology in (
        {"redis_cluster_nodes": "a:1"},
        {"redis_sentinels": "a:1", "redis_sentinel_master": "m"},
    ):
        with pytest.raises(ValidationError, match="REDIS_PASSWORD must be set"):
            CommonSettings(**_PRODUCTION, **topology)
        with pytest.raises(ValidationError, match="placeholder"):
            CommonSettings(**_PRODUCTION, **topology, redis_password="changeme")
        ok = CommonSettings(**_PRODUCTION, **topology, redis_password="a-long-random-secret")
        assert ok.redis_topology.password == "a-long-random-secret"
    assert issubclass(ProductionConfigError, ValueError)


def test_replica_acks_are_bounded() -> None:
    with pytest.raises(ValidationError):
        CommonSettings(redis_wait_timeout_ms=0)
    with pytest.raises(ValidationError):
        CommonSettings(redis_min_replicas_ack=-1)
    assert CommonSettings().redis_min_replicas_ack == 0
