"""`make run` (deploy/local/cluster.py) on each Redis setting: it uses the
Sentinel group or Cluster the environment names, starts its embedded Redis
only when none is named, and refuses two at once. The Cluster run goes the
whole way: register, log in, read the profile and log out through the gateway."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import new_user
from tests.e2e.processes import free_port
from tests.support.redis_servers import RedisCluster, SentinelGroup

pytestmark = pytest.mark.topologies

ROOT = Path(__file__).resolve().parents[2]


def _cluster_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_local_cluster", ROOT / "deploy/local/cluster.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cluster = _cluster_script()


def test_a_named_sentinel_group_or_cluster_is_used_not_the_embedded_one(
    sentinel_group: SentinelGroup, redis_cluster: RedisCluster
) -> None:
    for env in (
        {
            "REDIS_SENTINELS": sentinel_group.sentinels_setting,
            "REDIS_SENTINEL_MASTER": sentinel_group.master_name,
        },
        {"REDIS_CLUSTER_NODES": redis_cluster.nodes_setting},
    ):
        handle = cluster.start_redis(env)
        try:
            assert handle.kind == "external"
            assert handle.env == {}  # the services read the same variables
        finally:
            handle.close()


def test_two_redis_settings_at_once_are_refused(redis_cluster: RedisCluster) -> None:
    with pytest.raises(cluster.ClusterError, match="exactly one"):
        cluster.start_redis(
            {
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "REDIS_CLUSTER_NODES": redis_cluster.nodes_setting,
            }
        )
    with pytest.raises(cluster.ClusterError, match="REDIS_SENTINEL_MASTER"):
        cluster.start_redis({"REDIS_SENTINELS": "127.0.0.1:1"})


def _pump(proc: subprocess.Popen[str], out: list[str], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if "cluster ready" in line:
            ready.set()


def test_make_run_on_a_cluster_end_to_end(tmp_path: Path, redis_cluster: RedisCluster) -> None:
    gateway, auth, user = free_port(), free_port(), free_port()
    env: dict[str, Any] = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REDIS_SENTINELS")
    }
    env |= {
        "REDIS_CLUSTER_NODES": redis_cluster.nodes_setting,
        "REDIS_PREFIX": f"test:{uuid.uuid4().hex[:10]}:",
        "ENV": "test",
        "RATE_LIMIT_ENABLED": "false",
    }
    argv = [sys.executable, str(ROOT / "deploy/local/cluster.py"), "--gateway", "python"]
    argv += ["--gateway-port", str(gateway), "--auth-port", str(auth), "--user-port", str(user)]
    argv += ["--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    ready = threading.Event()
    pump = threading.Thread(target=_pump, args=(proc, out, ready), daemon=True)
    pump.start()
    try:
        assert ready.wait(90), "cluster did not start:\n" + "".join(out[-40:])
        text = "".join(out)
        assert "EMBEDDED FAKE" not in text
        assert f"cluster {redis_cluster.nodes_setting}" in text
        base = f"http://127.0.0.1:{gateway}"
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as http:
            body = new_user()
            created = http.post("/users", json=body)
            assert created.status_code == 201, created.text
            login = http.post("/login", json={"email": body["email"], "password": body["password"]})
            assert login.status_code == 200, login.text
            bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
            assert http.get(f"/users/{created.json()['id']}", headers=bearer).status_code == 200
            assert http.post("/logout", headers=bearer).status_code == 204
            assert http.get("/users/me", headers=bearer).status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pump.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
