# The gateway's metrics exporter: Debian's mtail running deploy/mtail/gateway.mtail
# on the log nginx writes in log_format gateway_metrics (a volume shared with
# the gateway; GATEWAY_METRICS_LOG on both). It counts what nginx refused
# itself (limit_req 429s, dot segments, oversized bodies), which stub_status
# cannot show; docs/SECURITY_TEAM.md says why mtail.
#
#   docker build -f deploy/docker/gateway-metrics.Dockerfile -t idp-gateway-metrics .
#
# Serves /metrics on 3903 (job `gateway` in deploy/prometheus/prometheus.yml).
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends mtail \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o 101 -g 101 -m 0755 /var/run/gateway-metrics
# (The directory as in the gateway image: whichever container mounts the
# shared volume first, it starts owned by nginx's uid.)
COPY deploy/mtail/ /etc/mtail/
COPY --chmod=0755 deploy/docker/gateway-metrics/run.sh /usr/local/bin/gateway-metrics

ENV GATEWAY_METRICS_LOG=/var/run/gateway-metrics/access.log \
    GATEWAY_METRICS_LOG_MAX_BYTES=16777216
# nginx's uid in the gateway image: the log is nginx's file, and run.sh
# empties it when it grows past GATEWAY_METRICS_LOG_MAX_BYTES.
USER 101:101
EXPOSE 3903
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3903"]
CMD ["/usr/local/bin/gateway-metrics"]
