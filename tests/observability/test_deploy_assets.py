"""Grafana provisioning, dashboards and the OTel collector config: consistent with
each other and with the metrics the services actually define.

(The queries themselves run against a real Prometheus in test_prometheus_e2e;
no Grafana or collector binary is available to the suite, so these check
the files' structure and references.)
"""

from __future__ import annotations

import yaml
from prometheus_client.registry import CollectorRegistry

from shared.observability.metrics import ServiceMetrics
from tests.observability.queries import (
    DEPLOY,
    alert_rules,
    dashboard_queries,
    dashboards,
    gateway_metric_names,
    metric_names,
    mtail_counters,
)


def _defined_metric_names() -> set[str]:
    metrics = ServiceMetrics("auth-service")
    metrics.initialise(issuer=True)
    metrics.observe_request("GET", "/x", 200, 0.01)
    metrics.add_gauge("idp_signing_key_age_seconds", "age", lambda: 1.0)
    registry: CollectorRegistry = metrics.registry
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_every_queried_metric_exists() -> None:
    defined = _defined_metric_names()
    used: dict[str, set[str]] = {}
    for where, expr in dashboard_queries():
        used[where] = metric_names(expr)
    for rule in alert_rules():
        used[rule["alert"]] = metric_names(rule["expr"])
    unknown = {where: names - defined for where, names in used.items() if names - defined}
    assert unknown == {}


def test_every_queried_gateway_metric_is_an_mtail_counter() -> None:
    declared = mtail_counters()
    queries = [*dashboard_queries(), *((r["alert"], r["expr"]) for r in alert_rules())]
    used = {where: gateway_metric_names(expr) for where, expr in queries}
    assert any(used.values())
    unknown = {where: names - declared for where, names in used.items() if names - declared}
    assert unknown == {}


def test_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {ds["uid"] for ds in provisioned["datasources"]}
    boards = dashboards()
    assert set(boards) == {"security.json", "service-health.json"}
    seen_uids = set()
    for name, board in boards.items():
        assert board["uid"] not in seen_uids
        seen_uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["title"], (name, panel["id"])
            assert panel.get("description"), (name, panel["id"])
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, (name, panel["title"])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/idp.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_no_dashboard_or_rule_groups_by_an_unbounded_label() -> None:
    for where, expr in [*dashboard_queries(), *((r["alert"], r["expr"]) for r in alert_rules())]:
        for label in ("user_id", "session_id", "client_ip", "path", "instance_id"):
            assert label not in expr, where


def test_collector_pipelines_reference_defined_components() -> None:
    config = yaml.safe_load((DEPLOY / "otel/collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "logs"}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] == ["otlp"], name
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind], (name, component)
    assert set(config["receivers"]["otlp"]["protocols"]) == {"http", "grpc"}
    assert config["service"]["extensions"] == list(config["extensions"])
