"""deploy/k8s: kustomize renders every overlay, every resource validates against
the Kubernetes schemas (kubernetes-validate, from PyPI), and the rendered
manifests say what docs/OPERATIONS.md promises: probes, resources, HPA and
PDB per Deployment, the NetworkPolicy graph, secrets only from ignored files.

Rendering uses `kubectl kustomize` or `kustomize build` when either is
installed. Without them each resource file is validated on its own and every
path a kustomization.yaml names must exist.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from auth_service.config import AuthSettings
from user_service.config import UserSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
K8S_VERSION = kubernetes_validate.latest_version()
APPS = {"idp-gateway", "idp-auth", "idp-user"}


def _kustomize() -> list[str] | None:
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s copied, with each overlay's git-ignored secrets/ filled the way
    docs/OPERATIONS.md says: the env files from secrets.example (the signing
    keys are in the database, KEY_STORE=database: no key Secret to make)."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets"))
    for overlay in OVERLAYS:
        secrets = tree / "overlays" / overlay / "secrets"
        secrets.mkdir()
        for env in (K8S / "secrets.example").glob("*.env"):
            shutil.copy(env, secrets / env.name)
    return tree


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, k8s_tree: Path) -> list[dict[str, Any]]:
    command = _kustomize()
    if command is None:
        pytest.fail(
            "kubectl or kustomize is required to render the overlays "
            "(.ci/run installs kubernetes-client)"
        )
    result = subprocess.run(
        [*command, str(k8s_tree / "overlays" / request.param)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return _docs(result.stdout)


def _by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


# --- schema validation -------------------------------------------------------------


def test_every_rendered_resource_validates(rendered: list[dict[str, Any]]) -> None:
    for resource in rendered:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def _resource_files() -> Iterator[Path]:
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml" and "secrets" not in path.parts:
            yield path


@pytest.mark.parametrize("path", list(_resource_files()), ids=lambda p: str(p.relative_to(K8S)))
def test_every_resource_file_validates_on_its_own(path: Path) -> None:
    """What runs without kustomize; patches are partial, so only full resources."""
    for doc in _docs(path.read_text()):
        if "spec" in doc and "selector" not in doc["spec"] and doc["kind"] == "Deployment":
            continue
        if doc.get("kind") == "Service" and "ports" not in doc.get("spec", {}):
            continue  # an overlay's partial patch of a Service
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator kinds: checked in the monitoring tests below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_references_exist(path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    names = list(spec.get("resources", []))
    names += [p["path"] for p in spec.get("patches", []) if "path" in p]
    for gen in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        names += gen.get("envs", []) + gen.get("files", [])
    for name in names:
        target = path.parent / name
        if "secrets" in Path(name).parts:
            # Made by the operator, never committed: it must be ignored by git.
            ignored = subprocess.run(
                ["git", "check-ignore", "-q", str(target)], cwd=REPO, check=False
            )
            assert ignored.returncode == 0, f"{name} must be git-ignored"
            continue
        assert target.exists(), f"{path.relative_to(K8S)} names missing {name}"


# --- what the manifests promise ----------------------------------------------------


def test_deployments_have_probes_resources_and_a_locked_down_container(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = _by_kind(rendered, "Deployment")
    assert set(deployments) == APPS
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            limits = container["resources"]["limits"]
            assert container["resources"]["requests"], where
            assert "memory" in limits, where
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
        main, *sidecars = pod["containers"]
        assert main["readinessProbe"]["httpGet"]["path"] in {"/readyz", "/healthz"}
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for sidecar in sidecars:
            assert sidecar["readinessProbe"], f"{name}/{sidecar['name']}"
            assert sidecar["livenessProbe"], f"{name}/{sidecar['name']}"


def test_the_gateway_pod_exports_the_gateways_own_refusals(
    rendered: list[dict[str, Any]],
) -> None:
    # nginx writes log_format gateway_metrics to a volume its mtail sidecar
    # reads; Prometheus (monitoring namespace) may reach that sidecar only.
    deployment = _by_kind(rendered, "Deployment")["idp-gateway"]
    template = deployment["spec"]["template"]
    pod = template["spec"]
    gateway, metrics = pod["containers"]
    assert metrics["name"] == "metrics"
    assert "/gateway-metrics:" in metrics["image"]
    ((port,),) = [[p["containerPort"] for p in metrics["ports"]]]
    assert port == 3903
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    mounts = {
        c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        for c in (gateway, metrics)
    }
    assert mounts["gateway"]["metrics-log"] == mounts["metrics"]["metrics-log"]
    config = next(
        c for name, c in _by_kind(rendered, "ConfigMap").items() if name.startswith("idp-gateway")
    )
    log = config["data"]["GATEWAY_METRICS_LOG"]
    assert log.startswith(mounts["gateway"]["metrics-log"] + "/")
    policy = _by_kind(rendered, "NetworkPolicy")["idp-gateway"]["spec"]
    allowed = {
        (peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], p["port"])
        for rule in policy["ingress"]
        for peer in rule["from"]
        for p in rule["ports"]
    }
    assert allowed == {("ingress-nginx", 8000), ("monitoring", 3903)}


def test_services_migrate_in_a_job_and_pods_wait_for_it(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = _by_kind(rendered, "Deployment")
    jobs = _by_kind(rendered, "Job")
    services = {  # ExternalName Services (PostgreSQL, Redis) select no pods
        name: s["spec"]["selector"]
        for name, s in _by_kind(rendered, "Service").items()
        if "selector" in s["spec"]
    }
    assert set(jobs) == {"idp-auth-migrate", "idp-user-migrate", "idp-auth-keys-init"}
    for svc in ("auth", "user"):
        pod = deployments[f"idp-{svc}"]["spec"]["template"]["spec"]
        job = jobs[f"idp-{svc}-migrate"]
        job_pod = job["spec"]["template"]["spec"]
        (migrate,) = job_pod["containers"]
        # One migration per release, in a Job; never an init container per pod.
        assert migrate["command"] == ["python", "-m", f"{svc}_service.migrate", "upgrade"]
        assert migrate["image"] == pod["containers"][0]["image"]
        assert migrate["envFrom"] == pod["containers"][0]["envFrom"]
        assert job_pod["restartPolicy"] == "OnFailure"
        assert job_pod["automountServiceAccountToken"] is False
        sc = migrate["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        # The pods only wait for the schema.
        (init,) = pod["initContainers"]
        assert init["command"][:4] == ["python", "-m", f"{svc}_service.migrate", "check"]
        assert "--wait" in init["command"]
        assert init["image"] == pod["containers"][0]["image"]
        assert init["envFrom"] == pod["containers"][0]["envFrom"]
        # The Job's pod is no Service's endpoint.
        labels = job["spec"]["template"]["metadata"]["labels"]
        for selector in services.values():
            assert not set(selector.items()) <= set(labels.items())
    policy = _by_kind(rendered, "NetworkPolicy")["idp-migrate"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "migrate"}}
    assert "ingress" not in policy, "nothing reaches a migration pod"
    ((port,),) = [[p["port"] for p in rule["ports"]] for rule in policy["egress"]]
    assert port == 5432


def test_every_deployment_has_an_hpa_and_a_pdb(rendered: list[dict[str, Any]]) -> None:
    hpas = _by_kind(rendered, "HorizontalPodAutoscaler")
    pdbs = _by_kind(rendered, "PodDisruptionBudget")
    deployments = _by_kind(rendered, "Deployment")
    for name, deployment in deployments.items():
        assert hpas[name]["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = pdbs[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()


def _app(selector: dict[str, Any]) -> str | None:
    return selector.get("matchLabels", {}).get("app.kubernetes.io/name")


def _edges(policies: dict[str, dict[str, Any]], direction: str) -> set[tuple[str, str, int]]:
    """(from app, to app, port) pairs that the policies open between app pods."""
    edges = set()
    peer_key = "from" if direction == "ingress" else "to"
    for policy in policies.values():
        owner = _app(policy["spec"]["podSelector"])
        for rule in policy["spec"].get(direction, []):
            for peer in rule.get(peer_key, []):
                other = (
                    _app(peer.get("podSelector", {})) if "namespaceSelector" not in peer else None
                )
                if owner is None or other is None:
                    continue
                for port in rule.get("ports", []):
                    pair = (other, owner) if direction == "ingress" else (owner, other)
                    edges.add((*pair, int(port["port"])))
    return edges


def test_network_policies_allow_exactly_the_designed_paths(
    rendered: list[dict[str, Any]],
) -> None:
    policies = _by_kind(rendered, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    designed = {
        ("idp-gateway", "idp-auth", 8001),
        ("idp-gateway", "idp-user", 8002),
        ("idp-auth", "idp-user", 8002),  # POST /internal/profiles
        ("idp-user", "idp-auth", 8001),  # the JWKS
    }
    assert _edges(policies, "ingress") == designed
    assert _edges(policies, "egress") == designed
    # Both services (and only they) reach PostgreSQL and Redis.
    for name in ("idp-auth", "idp-user"):
        ports = {
            p["port"]
            for rule in policies[name]["spec"]["egress"]
            if any("ipBlock" in peer for peer in rule["to"])
            for p in rule["ports"]
        }
        assert ports == {5432, 6379}
    assert not any(
        "ipBlock" in peer
        for rule in policies["idp-gateway"]["spec"]["egress"]
        for peer in rule["to"]
    )
    # The gateway accepts traffic from the Ingress controller only (and
    # Prometheus on its metrics sidecar's port: the test above).
    gateway_in, _ = policies["idp-gateway"]["spec"]["ingress"]
    assert [p["port"] for p in gateway_in["ports"]] == [8000]


def test_ingress_sends_everything_to_the_gateway_over_tls(rendered: list[dict[str, Any]]) -> None:
    (ingress,) = _by_kind(rendered, "Ingress").values()
    assert ingress["spec"]["tls"]
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"idp-gateway"}


def test_redis_and_postgres_are_external(rendered: list[dict[str, Any]]) -> None:
    services = _by_kind(rendered, "Service")
    for name in ("redis", "postgres"):
        assert services[name]["spec"]["type"] == "ExternalName"
    kinds = {r["kind"] for r in rendered}
    assert "StatefulSet" not in kinds


def test_signing_keys_live_in_the_database_and_rotate_on_a_schedule(
    rendered: list[dict[str, Any]],
) -> None:
    """No ReadWriteMany volume and no read-only key Secret: KEY_STORE=database,
    sealed under KEY_ENCRYPTION_KEY from the auth secrets, scheduled rotation on."""
    auth = _by_kind(rendered, "Deployment")["idp-auth"]["spec"]["template"]["spec"]
    assert not [v for v in auth["volumes"] if "secret" in v or "persistentVolumeClaim" in v]
    assert "idp-signing-keys" not in _by_kind(rendered, "Secret")
    config = {k: v for r in _by_kind(rendered, "ConfigMap").values() for k, v in r["data"].items()}
    assert config["KEY_STORE"] == "database"
    assert "KEY_DIR" not in config
    assert "KEY_ENCRYPTION_KEY" not in config, "a secret, never in a ConfigMap"
    assert config["ENV"] == "production"
    assert config["DOCS_ENABLED"] == "false"
    # The settings the pods get pass the service's own rotation checks.
    interval = int(config["KEY_ROTATION_INTERVAL_SECONDS"])
    assert 7 * 86400 <= interval <= 90 * 86400
    settings = AuthSettings(
        **{k.lower(): v for k, v in config.items() if k.startswith(("KEY_", "JWKS_"))}
    )
    assert settings.key_rotation_interval_seconds == interval
    # KEY_ENCRYPTION_KEY reaches the container from the auth Secret, with a
    # placeholder in the example (production refuses to start without a key).
    envs = auth["containers"][0]["envFrom"]
    (secret_ref,) = [e["secretRef"]["name"] for e in envs if "secretRef" in e]
    assert secret_ref.startswith("idp-auth-secrets")
    example = (K8S / "secrets.example" / "auth.env").read_text().splitlines()
    assert "KEY_ENCRYPTION_KEY=CHANGE-ME" in example
    # The first key: a Job after the schema, idempotent, the service's own env.
    job = _by_kind(rendered, "Job")["idp-auth-keys-init"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    assert container["command"] == ["python", "-m", "auth_service.keys", "init"]
    assert container["envFrom"] == auth["containers"][0]["envFrom"]
    (wait,) = job["initContainers"]
    assert wait["command"][:4] == ["python", "-m", "auth_service.migrate", "check"]


def test_config_maps_set_only_real_settings(rendered: list[dict[str, Any]]) -> None:
    """A typo in a variable name would silently leave the default in force."""
    known = {name.upper() for cls in (AuthSettings, UserSettings) for name in cls.model_fields}
    gateway = {
        "AUTH_UPSTREAM",
        "USER_UPSTREAM",
        "LISTEN_PORT",
        "GATEWAY_REAL_IP_FROM",
        "GATEWAY_METRICS_LOG",
    }
    for name, config in _by_kind(rendered, "ConfigMap").items():
        unknown = set(config["data"]) - known - gateway
        assert unknown == set(), f"{name}: {sorted(unknown)}"


def test_no_secret_or_key_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--others", "--cached", "--exclude-standard", "deploy"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in tracked:
        text = (REPO / path).read_text(errors="replace") if (REPO / path).is_file() else ""
        assert "PRIVATE KEY-----" not in text, path
        if path.endswith(".yaml"):
            for doc in _docs(text):
                assert doc.get("kind") != "Secret", f"{path}: a Secret in git"
    for example in (K8S / "secrets.example").glob("*.env"):
        for line in example.read_text().splitlines():
            if "://" in line and not line.startswith("#"):
                assert ":CHANGE-ME@" in line, f"{example.name}: placeholders only"


# --- monitoring: what the security team applies beside the platform ------------------

MONITORING = K8S / "monitoring"


def _generator() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_k8s_monitoring", MONITORING / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def monitoring() -> list[dict[str, Any]]:
    command = _kustomize()
    if command is None:
        pytest.fail("kubectl or kustomize is required to render deploy/k8s/monitoring")
    result = subprocess.run(
        [*command, str(MONITORING)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return _docs(result.stdout)


def test_generated_monitoring_files_are_up_to_date(tmp_path: Path) -> None:
    generate = _generator()
    assert generate.main(["--check"]) == 0, "run: uv run python deploy/k8s/monitoring/generate.py"
    # And --check itself notices a stale file.
    assert generate.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "prometheus-rules.yaml").write_text("stale\n")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_the_prometheus_rule_holds_exactly_the_rules_promtool_tests(
    monitoring: list[dict[str, Any]],
) -> None:
    (rule,) = _by_kind(monitoring, "PrometheusRule").values()
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == alerts["groups"]
    # promtool's tests load this very file.
    for test in (REPO / "deploy" / "prometheus" / "tests").glob("*.yml"):
        assert "alerts.yml" in " ".join(yaml.safe_load(test.read_text())["rule_files"])


def test_monitors_scrape_every_job_of_the_prometheus_config(
    monitoring: list[dict[str, Any]],
) -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]} - {"prometheus"}
    monitors = [
        *_by_kind(monitoring, "ServiceMonitor").values(),
        *_by_kind(monitoring, "PodMonitor").values(),
    ]
    seen = set()
    for monitor in monitors:
        spec = monitor["spec"]
        (endpoint,) = spec.get("endpoints") or spec["podMetricsEndpoints"]
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        seen.add(relabel["replacement"])
        assert set(spec["namespaceSelector"]["matchNames"]) == {"idp", "idp-staging"}
    assert seen == jobs


def test_collector_and_dashboards_are_the_files_compose_mounts(
    monitoring: list[dict[str, Any]],
) -> None:
    maps = _by_kind(monitoring, "ConfigMap")
    collector = maps["otel-collector-config"]["data"]["collector.yaml"]
    assert collector == (REPO / "deploy" / "otel" / "collector.yaml").read_text()
    dashboards = maps["idp-grafana-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (REPO / "deploy" / "grafana" / "dashboards").glob("*")}
    assert dashboards["data"] == files
    deployment = _by_kind(monitoring, "Deployment")["otel-collector"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "otel-collector-config"
    # Where the services send OTLP (the overlays' idp-common).
    common = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    literals = next(g for g in common["configMapGenerator"] if g["name"] == "idp-common")
    endpoint = next(v for v in literals["literals"] if v.startswith("OTEL_EXPORTER_OTLP_ENDPOINT="))
    service = _by_kind(monitoring, "Service")["otel-collector"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert endpoint == f"OTEL_EXPORTER_OTLP_ENDPOINT=http://{host}:4318"
    for resource in monitoring:
        if resource["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # Prometheus Operator kinds: no schema in kubernetes-validate
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
