#!/usr/bin/env bash
# `make images`: every image docker-compose.yml names, built on this machine
# without a container registry (docs/OPERATIONS.md, "Images without a registry").
#
# 1. debian:bookworm-slim, made from Debian packages with debootstrap and
#    `docker import`; it carries this machine's CA bundle so that apt, pip and
#    uv inside builds trust the same TLS roots as the host does.
# 2. Stand-ins for the third-party images, built FROM that base from Debian's
#    packages and tagged with the names the compose file and the Dockerfiles
#    use (deploy/images/standins/, one Dockerfile each, saying what it honours).
# 3. The project's own images: every compose service with a `build:` section.
#
# Idempotent: an image that exists is kept (IDP_IMAGES_REBUILD=1 rebuilds the
# stand-ins). On a machine that can pull from a registry none of this is needed.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Debian's docker client: BuildKit built in (RUN --mount, COPY --chmod).
export PATH="/usr/bin:$PATH"
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1
log() { printf '=== images: %s\n' "$*"; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

BASE=debian:bookworm-slim
CA_BUNDLE="${IDP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if ! have "$BASE"; then
  log "$BASE from debootstrap (minbase, $MIRROR)"
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed: apt-get install debootstrap" >&2; exit 1; }
  root="$(mktemp -d /tmp/idp-rootfs.XXXXXX)"
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
  # The host's roots, also where Debian's ca-certificates keeps local ones, so
  # a later `apt-get install ca-certificates` keeps them in the bundle.
  install -d "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates"
  cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  cp "$CA_BUNDLE" "$root/usr/local/share/ca-certificates/host-bundle.crt"
  # Like the official slim image: no docs, no apt lists, no caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    -c 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    -c 'ENV UV_NATIVE_TLS=1' \
    -c 'CMD ["bash"]' - "$BASE" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

# name used by the stack  <-  deploy/images/standins/<file>.Dockerfile
standins=(
  "python:3.11.13-slim-bookworm python"
  "ghcr.io/astral-sh/uv:0.13.9 uv"
  "nginx:1.28.0-alpine nginx"
  "redis:7.4.2-alpine redis"
  "postgres:16.9-alpine postgres"
  "prom/prometheus:v3.2.1 prometheus"
  "otel/opentelemetry-collector-contrib:0.120.0 otelcol"
)
# The Python stand-in first (two others build on it), then the rest at once:
# their time is mostly apt downloads.
logs="$(mktemp -d /tmp/idp-images.XXXXXX)"
build_standin() {  # name file
  if have "$1" && [ -z "${IDP_IMAGES_REBUILD:-}" ]; then
    return 0
  fi
  log "stand-in $1 (deploy/images/standins/$2.Dockerfile)"
  docker build -f "deploy/images/standins/$2.Dockerfile" -t "$1" \
    --label org.opencontainers.image.description="idp stand-in for $1, built from Debian packages" \
    deploy/images/standins >"$logs/$2.log" 2>&1 || {
      echo "stand-in $1 failed:" >&2
      tail -40 "$logs/$2.log" >&2
      return 1
    }
}
read -r name file <<<"${standins[0]}"
build_standin "$name" "$file"
pids=()
for entry in "${standins[@]:1}"; do
  read -r name file <<<"$entry"
  build_standin "$name" "$file" &
  pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
rm -rf "$logs"
[ "$failed" = 0 ] || exit 1

# grafana/grafana: Debian has no Grafana, its own packages come from a
# registry this machine cannot reach, and no stand-in could be Grafana.
have grafana/grafana:11.5.2 || log "grafana/grafana:11.5.2 is not available here: the stack runs without Grafana (docs/OPERATIONS.md)"

log "the project's images (compose build)"
if docker compose version >/dev/null 2>&1; then
  docker compose build
else
  docker-compose build
fi
