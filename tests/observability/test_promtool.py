"""The shipped Prometheus config and alert rules, checked by Prometheus' own promtool.

These fail (not skip) without promtool: `apt-get install prometheus`
(.ci/run installs it).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.observability.queries import PROMETHEUS


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install prometheus (see .ci/run)")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_scrape_config_is_valid() -> None:
    done = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_are_valid() -> None:
    done = _promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "tests", sorted(p.name for p in (PROMETHEUS / "tests").glob("*.yml")), ids=str
)
def test_alert_rule_unit_tests_pass(tests: str) -> None:
    done = _promtool("test", "rules", str(PROMETHEUS / "tests" / tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test() -> None:
    from tests.observability.queries import alert_rules

    tested = "".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.yml"))
    untested = [r["alert"] for r in alert_rules() if f"alertname: {r['alert']}\n" not in tested]
    assert untested == []
