# Stand-in for prom/prometheus:v3.2.1: Debian bookworm's prometheus (2.42).
# The shipped configs pass Debian's promtool (tests/deploy). Honours what
# docker-compose.yml relies on: the prometheus entrypoint taking its flags as
# the command, /prometheus writable by the image's user (nobody), wget.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends prometheus wget >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o nobody -g nogroup -m 0755 /prometheus /etc/prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
