# Image of one Python service. Both services share this file and the lock file;
# each image holds only its own package plus shared/:
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=auth_service \
#       --build-arg PORT=8001 -t idp-auth .
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=user_service \
#       --build-arg PORT=8002 -t idp-user .
#
# Bases are pinned to exact versions. For byte-for-byte reproducible builds pin
# the digests your registry resolves them to as well, e.g.
#   docker buildx imagetools inspect python:3.11.13-slim-bookworm
# and write python:3.11.13-slim-bookworm@sha256:<digest> below.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: the locked dependencies, then the code -------------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# UV_NATIVE_TLS: trust the system's CA bundle (a proxy's CA added there too).
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NATIVE_TLS=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first: this layer is rebuilt only when the lock changes.
# --frozen: exactly uv.lock, never a re-resolution; --no-dev: no test tools.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=auth_service|user_service" >&2; exit 1; }
COPY shared/ shared/
COPY ${SERVICE}/ ${SERVICE}/
# Bytecode now: the root filesystem is read-only at run time.
RUN /app/.venv/bin/python -m compileall -q shared "${SERVICE}"

# --- runtime: no uv, no build cache, no compiler ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
ARG PORT=8000
# A fixed uid/gid so volume and Secret ownership can be set from outside
# (chown 10001, fsGroup: 10001).
RUN groupadd --system --gid 10001 idp \
 && useradd --system --uid 10001 --gid idp --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin idp \
 && install -d -o idp -g idp -m 0700 /var/lib/idp /var/lib/idp/keys
WORKDIR /app
# Owned by root and not writable by the service user: code cannot be changed
# from inside even where the root filesystem is not mounted read-only.
COPY --from=build /app /app
COPY --chmod=0755 deploy/docker/service/entrypoint.sh /usr/local/bin/idp-entrypoint
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENV=production \
    DOCS_ENABLED=false \
    KEY_DIR=/var/lib/idp/keys \
    UVICORN_APP=${SERVICE}.main:create_app \
    UVICORN_FACTORY=true \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=${PORT} \
    UVICORN_PROXY_HEADERS=false \
    UVICORN_SERVER_HEADER=false \
    UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=20
# uvicorn reads UVICORN_* (above). Proxy headers stay off: the service decides
# itself which X-Forwarded-For to believe (TRUSTED_PROXIES).
USER 10001:10001
EXPOSE ${PORT}
# Ready = the process answers and its database and Redis do (/readyz).
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['UVICORN_PORT'], timeout=3)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["idp-entrypoint"]
CMD ["uvicorn"]
