#!/bin/sh
# Runs before the image's 20-envsubst-on-templates.sh: lay out the nginx prefix
# (a tmpfs or emptyDir) that deploy/nginx/gateway.conf.template expects.
set -eu
prefix="${GATEWAY_PREFIX:-/var/run/gateway}"
mkdir -p "$prefix/logs" "$prefix/tmp"
# The template logs to logs/access.log relative to the prefix; in a container
# that belongs on stdout, where the runtime collects it.
ln -sf /dev/stdout "$prefix/logs/access.log"

# Behind an Ingress controller or load balancer: trust its X-Forwarded-For.
# GATEWAY_REAL_IP_FROM lists its addresses (CIDRs, comma-separated); the
# template includes real_ip*.conf. Unset: the gateway is the edge.
rm -f "$prefix/real_ip.conf"
if [ -n "${GATEWAY_REAL_IP_FROM:-}" ]; then
    for cidr in $(printf '%s' "$GATEWAY_REAL_IP_FROM" | tr ',' ' '); do
        case "$cidr" in
            *[!0-9A-Fa-f.:/]*) echo "GATEWAY_REAL_IP_FROM: not a CIDR: $cidr" >&2; exit 1 ;;
        esac
        printf 'set_real_ip_from %s;\n' "$cidr"
    done > "$prefix/real_ip.conf"
fi

# The gateway's metrics exporter (deploy/docker/gateway-metrics.Dockerfile)
# reads log_format gateway_metrics from a file on a volume both containers
# mount: GATEWAY_METRICS_LOG names it. Unset: no such log.
rm -f "$prefix/metrics_log.conf"
if [ -n "${GATEWAY_METRICS_LOG:-}" ]; then
    case "$GATEWAY_METRICS_LOG" in
        /*) ;;
        *) echo "GATEWAY_METRICS_LOG: not an absolute path: $GATEWAY_METRICS_LOG" >&2; exit 1 ;;
    esac
    case "$GATEWAY_METRICS_LOG" in
        *[!A-Za-z0-9._/-]*) echo "GATEWAY_METRICS_LOG: unexpected characters" >&2; exit 1 ;;
    esac
    printf 'access_log %s gateway_metrics;\n' "$GATEWAY_METRICS_LOG" > "$prefix/metrics_log.conf"
fi
