#!/bin/sh
# Entrypoint of the service images. IDP_ENV_FILE, when set, names a file of
# NAME=value lines (DATABASE_URL, REDIS_URL: docker-compose.yml's secrets-init
# writes them into a volume) that become the environment of the command, so
# passwords come from a file at run time, never from the compose file, an
# image layer or a command line. Unset (Kubernetes: env from Secrets): a no-op.
set -eu
if [ -n "${IDP_ENV_FILE:-}" ]; then
    if [ ! -r "$IDP_ENV_FILE" ]; then
        echo "IDP_ENV_FILE=$IDP_ENV_FILE is not readable" >&2
        exit 1
    fi
    set -a
    . "$IDP_ENV_FILE"
    set +a
fi
exec "$@"
