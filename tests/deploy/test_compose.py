"""docker-compose.yml: valid (`docker-compose config`), and the same topology as
`make run` (deploy/local/cluster.py), so the local cluster tests cover it.

These are the checks that need no Docker engine: the compose file's model,
its secrets generator, PostgreSQL's init script (on the real server), Redis's
config (on a real redis-server), and the gateway image's prefix script with
`nginx -t`. tests/compose/ runs the stack itself (`make compose-test`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_DIR = REPO / "deploy" / "compose"
DOCKER_DIR = REPO / "deploy" / "docker"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
PRODUCTION = COMPOSE_DIR / "production.yml"
# An empty env file stands for "no .env" (docker-compose 1.29 wants a file).
EMPTY_ENV = REPO / "tests" / "deploy" / "empty.env"

EXPECTED_SERVICES = {
    "secrets-init",
    "gateway",
    "gateway-metrics",
    "auth",
    "user",
    "auth-migrate",
    "user-migrate",
    "redis",
    "postgres",
    "otel-collector",
    "prometheus",
    "mailsink",
    "grafana",
}
LONG_RUNNING = EXPECTED_SERVICES - {"secrets-init", "auth-migrate", "user-migrate"}
# The collector image is distroless: nothing inside it could probe its health.
NO_HEALTHCHECK = {"otel-collector"}


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cluster = _load(REPO / "deploy" / "local" / "cluster.py", "_compose_test_cluster")
init_secrets = _load(COMPOSE_DIR / "init_secrets.py", "_compose_test_init_secrets")


def _compose_command() -> list[str]:
    found = shutil.which("docker-compose")
    # Deliberately a failure, not a skip: .ci/run installs docker-compose.
    assert found, "docker-compose is not installed: apt-get install docker-compose (.ci/run)"
    return [found]


def compose(
    *args: str, env_file: Path | None = None, files: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess[str]:
    # Only what this test sets: a developer's shell or .env must not leak in.
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL"}}
    argv = [*_compose_command(), "--project-directory", str(REPO)]
    argv += ["--env-file", str(env_file or EMPTY_ENV)]
    for f in (COMPOSE, *files):
        argv += ["-f", str(f)]
    return subprocess.run(
        [*argv, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose model after interpolation and anchors, as `docker compose up` sees it."""
    result = compose("config")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    """The model with deploy/compose/production.yml and the example's settings."""
    result = compose("config", env_file=ENV_EXAMPLE, files=(PRODUCTION,))
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = yaml.safe_load(result.stdout)
    return document


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


# --- validity ------------------------------------------------------------------------


def test_docker_compose_config_is_valid() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_ops_ports_override_is_valid() -> None:
    result = compose("config", "-q", files=(COMPOSE_DIR / "ops-ports.yml",))
    assert result.returncode == 0, result.stderr


def test_compose_up_needs_nothing_first(resolved: dict[str, Any]) -> None:
    """No .env, no generated files: local defaults that work on localhost
    (passkeys need the RP ID `localhost` and the page's exact origin)."""
    services = resolved["services"]
    auth = services["auth"]["environment"]
    assert auth["ENV"] == "development"
    assert auth["ISSUER"] == "http://localhost:8000"
    assert auth["WEBAUTHN_RP_ID"] == "localhost"
    assert auth["WEBAUTHN_ORIGINS"] == "http://localhost:8000"
    for name, svc in services.items():
        assert not svc.get("env_file"), f"{name} reads an env file from the host"
    assert "secrets" not in resolved, "compose secrets are files someone must make first"


def test_the_gateway_port_moves_the_origins_with_it(tmp_path: Path) -> None:
    env_file = tmp_path / "port.env"
    env_file.write_text("GATEWAY_PORT=18555\n")
    result = compose("config", env_file=env_file)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["auth"]["environment"]["WEBAUTHN_ORIGINS"] == "http://localhost:18555"
    assert services["user"]["environment"]["ISSUER"] == "http://localhost:18555"
    ((_, published, _),) = (_port(p) for p in services["gateway"]["ports"])
    assert published == 18555


def test_production_override_needs_the_deployment_settings(tmp_path: Path) -> None:
    result = compose("config", "-q", files=(PRODUCTION,))
    assert result.returncode != 0
    assert "ISSUER" in result.stderr


def test_production_override_turns_on_production_mode(production: dict[str, Any]) -> None:
    services = production["services"]
    for name in ("auth", "user", "auth-migrate", "user-migrate"):
        env = services[name]["environment"]
        assert env["ENV"] == "production", name
        assert env["ISSUER"] == "https://idp.example.com", name
        assert env["DOCS_ENABLED"] == "false", name
    assert services["auth"]["environment"]["WEBAUTHN_ORIGINS"] == "https://idp.example.com"


# --- the same topology as `make run` ------------------------------------------------


def _cluster_defaults() -> Any:
    return cluster.parse_args([])


def test_services(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == EXPECTED_SERVICES


def test_the_gateway_is_the_only_published_port(resolved: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in resolved["services"].items() if s.get("ports")}
    assert set(published) == {"gateway"}
    ((host_ip, _, target),) = (_port(p) for p in published["gateway"])
    assert target == _cluster_defaults().gateway_port
    assert host_ip == "127.0.0.1"  # GATEWAY_BIND default: local only


def test_ports_and_upstreams_match_the_local_cluster(resolved: dict[str, Any]) -> None:
    defaults = _cluster_defaults()
    services = resolved["services"]
    gateway = services["gateway"]["environment"]
    assert gateway["AUTH_UPSTREAM"] == f"auth:{defaults.auth_port}"
    assert gateway["USER_UPSTREAM"] == f"user:{defaults.user_port}"
    assert gateway["LISTEN_PORT"] == str(defaults.gateway_port)
    assert services["auth"]["environment"]["UVICORN_PORT"] == str(defaults.auth_port)
    assert services["user"]["environment"]["UVICORN_PORT"] == str(defaults.user_port)
    # The wiring cluster.py gives the services, with compose's host names.
    assert (
        services["auth"]["environment"]["USER_SERVICE_URL"] == f"http://user:{defaults.user_port}"
    )
    assert (
        services["user"]["environment"]["JWKS_URL"]
        == f"http://auth:{defaults.auth_port}/.well-known/jwks.json"
    )
    assert services["auth"]["build"]["args"]["SERVICE"] == "auth_service"
    assert services["user"]["build"]["args"]["SERVICE"] == "user_service"


def _envsubst_like_the_nginx_image(template: str, env: dict[str, str], pattern: str) -> str:
    """What the nginx image's 20-envsubst-on-templates.sh does: replace ${NAME}
    for the environment variables whose names match NGINX_ENVSUBST_FILTER."""
    names = [n for n in env if re.search(pattern, n)]
    for name in names:
        template = template.replace("${" + name + "}", env[name])
    return template


def test_compose_and_make_run_render_the_same_gateway_template(
    resolved: dict[str, Any], tmp_path: Path
) -> None:
    dockerfile = (DOCKER_DIR / "gateway.Dockerfile").read_text()
    template = cluster.GATEWAY_TEMPLATE
    copied = re.search(r"^COPY (\S+) /etc/nginx/templates/(\S+)$", dockerfile, re.M)
    assert copied, "the gateway image must copy the template into /etc/nginx/templates"
    assert REPO / copied.group(1) == template
    assert copied.group(2) == "gateway.conf.template"
    assert '-c", "gateway.conf"' in dockerfile  # the rendered name of that template
    env = {**resolved["services"]["gateway"]["environment"], "HOSTNAME": "x", "HOME": "/"}
    filter_match = re.search(r"NGINX_ENVSUBST_FILTER='([^']+)'", dockerfile)
    assert filter_match
    rendered = _envsubst_like_the_nginx_image(template.read_text(), env, filter_match.group(1))
    assert "${" not in rendered, "a template placeholder the compose gateway leaves unset"
    expected = cluster.render_gateway_config(
        tmp_path,
        auth_upstream=env["AUTH_UPSTREAM"],
        user_upstream=env["USER_UPSTREAM"],
        listen=env["LISTEN_PORT"],
    ).read_text()
    assert rendered == expected


def test_dependencies_wait_for_health(resolved: dict[str, Any]) -> None:
    services = resolved["services"]

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("gateway") == {"auth": "service_healthy", "user": "service_healthy"}
    for svc in ("auth", "user"):
        deps = conditions(svc)
        assert deps[f"{svc}-migrate"] == "service_completed_successfully"
        assert deps["redis"] == deps["postgres"] == "service_healthy"
        assert conditions(f"{svc}-migrate") == {"postgres": "service_healthy"}
    # Everything that reads a generated password waits until it exists.
    for name in ("redis", "postgres", "grafana"):
        assert conditions(name)["secrets-init"] == "service_completed_successfully"
    for name in LONG_RUNNING - NO_HEALTHCHECK:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_migrations_run_as_their_own_step(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for svc in ("auth", "user"):
        job = services[f"{svc}-migrate"]
        assert job["command"] == ["python", "-m", f"{svc}_service.migrate", "upgrade"]
        assert job["image"] == services[svc]["image"]
        assert job["environment"] == services[svc]["environment"]


def test_containers_are_locked_down(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, svc in services.items():
        assert svc.get("read_only") is True, f"{name}: root filesystem not read-only"
    for name in ("auth", "user", "auth-migrate", "user-migrate"):
        assert services[name]["user"] not in {"0", "0:0", "root"}
        assert services[name]["cap_drop"] == ["ALL"]
    # Root only to hand files to uid 10001: no network, no other capability.
    init = services["secrets-init"]
    assert init["network_mode"] == "none"
    assert init["cap_drop"] == ["ALL"]
    assert set(init["cap_add"]) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER"}


def _secrets_mount(service: dict[str, Any]) -> dict[str, Any]:
    (mount,) = (v for v in _volumes(service) if v["source"] == "idp-secrets")
    return mount


def test_state_is_persistent_and_password_protected(
    resolved: dict[str, Any], tmp_path: Path
) -> None:
    services = resolved["services"]
    assert "/data" in " ".join(v["target"] for v in _volumes(services["redis"]))
    for name in ("redis", "postgres", "grafana", "auth", "user"):
        assert _secrets_mount(services[name])["target"] == "/run/secrets"
    conf = (COMPOSE_DIR / "redis" / "redis.conf").read_text()
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)
    pg_env = services["postgres"]["environment"]
    assert pg_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    # Each service has its own database, reached with a password: the env
    # file secrets-init writes, which the service's entrypoint reads.
    init_secrets.init_secrets(tmp_path)
    for svc, db in (("auth", "idp_auth"), ("user", "idp_user")):
        assert services[svc]["environment"]["IDP_ENV_FILE"] == f"/run/secrets/{svc}.env"
        env = dict(
            line.split("=", 1) for line in (tmp_path / f"{svc}.env").read_text().splitlines()
        )
        assert re.fullmatch(
            rf"postgresql\+asyncpg://{db}:[^@]{{20,}}@postgres:5432/{db}", env["DATABASE_URL"]
        )
        assert re.fullmatch(r"redis://:[^@]{20,}@redis:6379/0", env["REDIS_URL"])


def _port(spec: str | dict[str, Any]) -> tuple[str, int, int]:
    """(host ip, published, target) from either form `config` prints (v1: short strings)."""
    if isinstance(spec, dict):
        return spec.get("host_ip", ""), int(spec["published"]), int(spec["target"])
    host_ip, published, target = spec.split("/")[0].rsplit(":", 2)
    return host_ip, int(published), int(target)


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Mounts as {type, source, target}, from either form `config` prints."""
    mounts = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            mounts.append(v)
            continue
        source, target, *mode = v.split(":")
        kind = "bind" if source.startswith(("/", ".")) else "volume"
        read_only = bool(mode) and "ro" in mode[0].split(",")
        mounts.append({"type": kind, "source": source, "target": target, "read_only": read_only})
    return mounts


def test_signing_keys_are_a_secret_not_an_image_layer(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    auth = services["auth"]
    assert auth["environment"]["KEY_DIR"] == "/run/secrets/signing_keys"
    # Read-only everywhere but in the one service that makes them.
    for name, svc in services.items():
        if any(v["source"] == "idp-secrets" for v in _volumes(svc)):
            read_only = bool(_secrets_mount(svc).get("read_only"))
            assert read_only == (name != "secrets-init"), name
    ignored = (REPO / ".dockerignore").read_text()
    for pattern in ("**/secrets", "**/*.pem", "**/.env", "**/.data"):
        assert pattern in ignored


def test_no_secret_is_written_in_the_compose_file(raw: dict[str, Any]) -> None:
    for name, svc in raw["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items() if isinstance(env, dict) else []:
            if re.search(r"PASSWORD|SECRET|_URL$", key) and key not in {
                "USER_SERVICE_URL",
                "JWKS_URL",
            }:
                assert str(value).startswith("/run/secrets/") or "${" in str(value), (
                    f"{name}.{key} holds a literal value"
                )
        assert "DATABASE_URL" not in env
        assert "REDIS_URL" not in env


def test_telemetry_uses_the_shipped_configs(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    mounts = {
        name: {
            Path(v["source"]).relative_to(REPO).as_posix()
            for v in _volumes(svc)
            if v.get("type") == "bind"
        }
        for name, svc in services.items()
    }
    assert "deploy/otel/collector.yaml" in mounts["otel-collector"]
    assert {"deploy/prometheus/prometheus.yml", "deploy/prometheus/alerts.yml"} <= mounts[
        "prometheus"
    ]
    assert {"deploy/grafana/provisioning", "deploy/grafana/dashboards"} <= mounts["grafana"]
    otlp = services["auth"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert otlp == "http://otel-collector:4318"
    # Prometheus scrapes the services by their compose names and ports.
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t
        for job in scrape["scrape_configs"]
        for c in job.get("static_configs", [])
        for t in c["targets"]
    }
    assert {"auth:8001", "user:8002"} <= targets


def test_the_gateways_exporter_reads_what_the_gateway_writes(resolved: dict[str, Any]) -> None:
    # nginx writes log_format gateway_metrics to a volume; mtail reads it
    # there, and Prometheus scrapes mtail by its compose name.
    services = resolved["services"]
    gateway, exporter = services["gateway"], services["gateway-metrics"]
    log = gateway["environment"]["GATEWAY_METRICS_LOG"]
    assert exporter["environment"]["GATEWAY_METRICS_LOG"] == log

    def volume_at(svc: dict[str, Any], path: str) -> str:
        (source,) = (v["source"] for v in _volumes(svc) if path.startswith(v["target"] + "/"))
        return str(source)

    assert volume_at(gateway, log) == volume_at(exporter, log)
    assert exporter["build"]["dockerfile"] == "deploy/docker/gateway-metrics.Dockerfile"
    dockerfile = (DOCKER_DIR / "gateway-metrics.Dockerfile").read_text()
    assert "FROM debian:bookworm-slim" in dockerfile
    assert "apt-get install -y --no-install-recommends mtail" in dockerfile
    assert "telemetry" in exporter["networks"]
    scrape = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = (j for j in scrape["scrape_configs"] if j["job_name"] == "gateway")
    assert job["static_configs"][0]["targets"] == ["gateway-metrics:3903"]


# --- images --------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["service.Dockerfile", "gateway.Dockerfile"])
def test_images_are_pinned_unprivileged_and_healthchecked(dockerfile: str) -> None:
    text = (DOCKER_DIR / dockerfile).read_text()
    bases = re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.M)
    assert bases, "base images are declared as ARGs with pinned defaults"
    for image in bases:
        tag = image.partition(":")[2]
        assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{image}: not an exact version"
    assert re.search(r"^USER (?!root|0)\S+", text, re.M), "runs as root"
    assert re.search(r"^HEALTHCHECK ", text, re.M)


def test_service_image_is_multi_stage_and_locked() -> None:
    text = (DOCKER_DIR / "service.Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 3
    assert "uv sync --frozen --no-dev" in text
    # The runtime stage gets the built /app and nothing of the build stage's tools.
    runtime = text.split("AS runtime", 1)[1]
    assert "uv" not in re.sub(r"UVICORN\w*|uvicorn", "", runtime).lower().replace("--", "")


def test_make_images_provides_every_image_the_stack_names(raw: dict[str, Any]) -> None:
    """Without a registry, `make images` is what makes `up` possible: a base
    image bumped in the compose file or a Dockerfile needs its stand-in too."""
    script = (REPO / "deploy" / "images" / "make-images.sh").read_text()
    made = set(re.findall(r'^  "(\S+) \w+"$', script, re.M))
    base = re.search(r"^BASE=(\S+)$", script, re.M)
    assert base
    made.add(base.group(1))
    named = {svc["image"] for svc in raw["services"].values() if "build" not in svc}
    for dockerfile in DOCKER_DIR.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        named |= set(re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.M))
        named |= {
            image
            for image in re.findall(r"^FROM (\S+)", text, re.M)
            if "$" not in image and image != "scratch"
        }
    # Grafana: no Debian package and no honest stand-in (docs/OPERATIONS.md).
    assert named - made == {"grafana/grafana:11.5.2"}


# --- what runs without Docker --------------------------------------------------------


def test_init_secrets_is_idempotent_and_private(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    created = init_secrets.init_secrets(directory)
    assert len(created) == 8
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    assert init_secrets.init_secrets(directory) == []
    assert before == {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    assert directory.stat().st_mode & 0o777 == 0o700
    for env_file in ("auth.env", "user.env"):
        assert (directory / env_file).stat().st_mode & 0o777 == 0o600
    manifest = (directory / "signing_keys" / "manifest.json").read_text()
    assert '"dev"' not in manifest, "compose keys are operator keys, not development ones"
    from auth_service.keys import KeyRing

    KeyRing.load(directory / "signing_keys", generate_if_missing=False, allow_dev_keys=False)


def test_in_the_stack_each_secret_belongs_to_its_one_reader(
    tmp_path: Path, resolved: dict[str, Any]
) -> None:
    """A container that mounts the secrets volume reads its own secrets only:
    0600 files of the reader's uid, a directory that cannot be listed."""
    owners = init_secrets.IN_STACK_OWNERS
    services = resolved["services"]
    # The services' uids are the ones compose runs them as.
    assert services["auth"]["user"] == services["auth-migrate"]["user"] == "10001:10001"
    assert services["user"]["user"] == services["user-migrate"]["user"] == "10002:10002"
    assert owners["auth.env"] == owners["signing_keys"] == 10001
    assert owners["user.env"] == 10002
    assert "--in-stack" in services["secrets-init"]["entrypoint"]
    # chown to this test's own uid: the modes are what is checked here; the
    # stack itself runs with the real owners (tests/compose).
    directory = tmp_path / "volume"
    init_secrets.init_secrets(directory, {name: os.getuid() for name in owners})
    assert directory.stat().st_mode & 0o777 == 0o711
    for name in owners:
        path = directory / name
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), name
    for key_file in (directory / "signing_keys").iterdir():
        assert key_file.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in directory.iterdir()) == sorted(owners)


@pytest.mark.postgres
def test_postgres_init_script_makes_one_owned_database_per_service(tmp_path: Path) -> None:
    from tests.conftest import PG_ADMIN_URL

    run = uuid.uuid4().hex[:8]
    names = {"auth": f"idp_init_auth_{run}", "user": f"idp_init_user_{run}"}
    env = {**os.environ, "PGHOST": "127.0.0.1", "POSTGRES_USER": "postgres"}
    for svc, name in names.items():
        (tmp_path / svc).write_text(secrets.token_urlsafe(16))
        env[f"{svc.upper()}_DB"] = name
        env[f"{svc.upper()}_DB_PASSWORD_FILE"] = str(tmp_path / svc)

    def psql(sql: str) -> str:
        return subprocess.run(
            ["psql", PG_ADMIN_URL, "-Atc", sql], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        script = COMPOSE_DIR / "postgres" / "init-databases.sh"
        result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for svc, name in names.items():
            query = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'"
            assert psql(query % name) == name  # our own generated name
            password = (tmp_path / svc).read_text()
            assert password not in result.stdout + result.stderr
        # Each role can migrate its own database (it owns the public schema).
        _migrate_as(names["auth"], (tmp_path / "auth").read_text(), "auth")
    finally:
        for name in names.values():
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            psql(f"DROP ROLE IF EXISTS {name}")


def _migrate_as(role: str, password: str, service: str) -> None:
    url = f"postgresql+asyncpg://{role}:{password}@127.0.0.1:5432/{role}"
    code = (
        "import asyncio, sys\n"
        f"from {service}_service.migrate import MIGRATIONS\n"
        "from shared.db.engine import make_engine\n"
        "from shared.db.migrations import upgrade_to_head\n"
        "async def go():\n"
        f"    engine = make_engine({url!r})\n"
        "    await upgrade_to_head(engine, MIGRATIONS)\n"
        "    await engine.dispose()\n"
        "asyncio.run(go())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def redis_from_compose_config(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """deploy/compose/redis/redis.conf on a real redis-server, as start.sh assembles it."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (.ci/run installs it)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = (COMPOSE_DIR / "redis" / "redis.conf").read_text()
    base = base.replace("bind 0.0.0.0", "bind 127.0.0.1").replace("port 6379", f"port {port}")
    base = base.replace("dir /data", f"dir {tmp_path}")
    (tmp_path / "base.conf").write_text(base)
    password = secrets.token_urlsafe(16)
    (tmp_path / "redis.conf").write_text(
        f'requirepass "{password}"\ninclude {tmp_path / "base.conf"}\n'
    )
    proc = subprocess.Popen(
        [server, str(tmp_path / "redis.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, password
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_config_requires_the_password_and_keeps_an_aof(
    redis_from_compose_config: tuple[int, str],
) -> None:
    port, password = redis_from_compose_config
    deadline = time.monotonic() + 10
    client = redis.Redis(port=port, password=password)
    anonymous = redis.Redis(port=port)
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("x")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        client.close()
        anonymous.close()


def test_redis_start_script_keeps_the_password_off_the_command_line() -> None:
    script = (COMPOSE_DIR / "redis" / "start.sh").read_text()
    assert "cat /run/secrets/redis_password" in script
    assert "--requirepass" not in script
    assert re.search(r"^umask 077$", script, re.M)


def test_gateway_prefix_script_and_rendered_config_pass_nginx_t(tmp_path: Path) -> None:
    nginx = cluster.find_nginx()
    assert nginx, "nginx is not installed (.ci/run installs it)"
    prefix = tmp_path / "prefix"
    env = {
        **os.environ,
        "GATEWAY_PREFIX": str(prefix),
        "GATEWAY_REAL_IP_FROM": "10.0.0.0/8,fd00::/8",
    }
    script = DOCKER_DIR / "gateway" / "05-gateway-prefix.sh"
    subprocess.run(["sh", str(script)], env=env, check=True)
    assert (prefix / "logs" / "access.log").is_symlink()
    assert (prefix / "real_ip.conf").read_text() == (
        "set_real_ip_from 10.0.0.0/8;\nset_real_ip_from fd00::/8;\n"
    )
    cluster.render_gateway_config(
        prefix, auth_upstream="127.0.0.1:8001", user_upstream="127.0.0.1:8002", listen="8000"
    )
    # nginx -t only; logs/access.log -> /dev/stdout is fine for a test run.
    result = subprocess.run(
        cluster.nginx_command(nginx, prefix, test=True), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    bad = subprocess.run(
        ["sh", str(script)],
        env={**env, "GATEWAY_REAL_IP_FROM": "10.0.0.0/8; include /etc/passwd"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0


def test_every_file_the_stack_mounts_exists(resolved: dict[str, Any]) -> None:
    missing = [
        f"{name}: {Path(v['source']).relative_to(REPO)}"
        for name, svc in resolved["services"].items()
        for v in _volumes(svc)
        if v["type"] == "bind" and not Path(v["source"]).exists()
    ]
    assert missing == [], "docker compose up would fail on missing mounts"


def test_every_file_an_image_copies_is_in_the_build_context() -> None:
    """The build context is an allow-list (.dockerignore): a COPY of a file
    left off it fails only at `docker build`, which static checks never run."""
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = []
    for dockerfile in (REPO / "deploy" / "docker").glob("*.Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            words = line.split()
            if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
                continue
            args = [w for w in words[1:] if not w.startswith("--")]
            sources += [(dockerfile.name, src.rstrip("/")) for src in args[:-1]]
    assert sources
    outside = [
        (name, src)
        for name, src in sources
        if "$" not in src and not any(src == a or src.startswith(a + "/") for a in allowed)
    ]
    assert outside == []
