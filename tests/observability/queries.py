"""The PromQL the shipped dashboards and alert rules use, read from the files.

Read from deploy/ rather than copied here, so that the tests that check
these queries against a real Prometheus keep up with every edit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"

# What Grafana substitutes before a query reaches Prometheus; values fit a
# test that has run for seconds with a 1 s scrape interval.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$service": ".*",
}

# A comparison with a number literal: "> 0.5", ">= bool 3". Removing them
# leaves the signal a rule thresholds, which must have data even when calm.
_THRESHOLD = re.compile(r"\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?[0-9][0-9.eE+-]*")


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target, Grafana variables substituted."""
    out = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(var, value)
                out.append((f"{name}: {panel['title']} ({target['refId']})", expr))
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_signals() -> list[tuple[str, str]]:
    """(alert, expr without its thresholds) of every alert rule."""
    return [(rule["alert"], _THRESHOLD.sub("", rule["expr"])) for rule in alert_rules()]


def gateway_metric_names(expr: str) -> set[str]:
    """The gateway_* metric names (the mtail exporter's) an expression reads."""
    return set(re.findall(r"\bgateway_[a-z_]+", expr))


def mtail_counters() -> set[str]:
    """The counters deploy/mtail/gateway.mtail declares."""
    program = (DEPLOY / "mtail" / "gateway.mtail").read_text()
    return set(re.findall(r"^counter (\w+)", program, re.MULTILINE))


def metric_names(expr: str) -> set[str]:
    """The idp_* metric names an expression reads (histogram suffixes kept)."""
    return set(re.findall(r"\bidp_[a-z_]+", expr))
