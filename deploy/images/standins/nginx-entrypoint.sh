#!/bin/sh
# As the official image's entrypoint: when starting nginx, run the scripts in
# /docker-entrypoint.d/ in order first, then exec the command.
set -eu
if [ "${1:-}" = nginx ]; then
    for script in $(find /docker-entrypoint.d/ -maxdepth 1 -type f -name '*.sh' | sort); do
        echo "$0: running $script"
        "$script"
    done
fi
exec "$@"
