#!/bin/sh
# Start the Docker engine when it is installed and not answering (CI machines
# without an init system); say what was done. Logs: /var/log/dockerd.log.
set -eu
export PATH="/usr/bin:$PATH"
docker info >/dev/null 2>&1 && exit 0
if ! command -v dockerd >/dev/null 2>&1; then
    echo "no Docker engine: apt-get install docker.io (or start yours)" >&2
    exit 1
fi
echo "starting dockerd (log: /var/log/dockerd.log)"
nohup dockerd >/var/log/dockerd.log 2>&1 &
i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 60 ]; then
        echo "dockerd did not answer within 60 s:" >&2
        tail -20 /var/log/dockerd.log >&2
        exit 1
    fi
    sleep 1
done
