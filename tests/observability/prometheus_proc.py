"""A real Prometheus for tests: the shipped config with the test's targets, 1 s scrapes."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.processes import free_port
from tests.observability.queries import PROMETHEUS


def prometheus_config(tmp: Path, targets: Mapping[str, int], *, rules: bool = True) -> Path:
    """The shipped prometheus.yml: the jobs named in `targets` (job -> port) only.

    Every job the test names must exist in the shipped file, so a renamed
    job breaks the test rather than silently scraping nothing.
    """
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")] if rules else []
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
    assert {job["job_name"] for job in jobs} == set(targets)
    for job in jobs:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    config["scrape_configs"] = jobs
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_prometheus(tmp: Path, config: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus on a free port; returns the process and its base URL once ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: apt-get install prometheus (see .ci/run)")
    port = free_port()
    with (tmp / "prometheus.log").open("wb") as log:  # the child keeps its own fd
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail("prometheus did not become ready")


def stop_prometheus(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def query(url: str, expr: str) -> list[Any]:
    """An instant query's result vector (asserts the query is valid)."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result
