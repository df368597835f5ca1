#!/bin/sh
# mtail on the gateway's metrics log, and that log kept small.
#
# nginx appends one short line per request (log_format gateway_metrics) and
# nobody rotates it: past GATEWAY_METRICS_LOG_MAX_BYTES it is emptied in
# place. nginx writes with O_APPEND, so it carries on at the new end; mtail
# sees the truncation and reads from the start. At most the lines of one
# mtail poll (250 ms) around a truncation can be missed.
set -eu
log="${GATEWAY_METRICS_LOG:-/var/run/gateway-metrics/access.log}"
max="${GATEWAY_METRICS_LOG_MAX_BYTES:-16777216}"
case "$max" in
    '' | *[!0-9]*) echo "GATEWAY_METRICS_LOG_MAX_BYTES: not a number: $max" >&2; exit 1 ;;
esac
[ -e "$log" ] || : >> "$log"

mtail --progs /etc/mtail --logs "$log" --port 3903 --emit_prog_label=false --logtostderr &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT

while kill -0 "$pid" 2>/dev/null; do
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if [ "$size" -gt "$max" ]; then
        : > "$log"
    fi
    sleep 10 &
    wait $! || true
done
wait "$pid"
