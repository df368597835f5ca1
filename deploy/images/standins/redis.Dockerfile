# Stand-in for redis:7.4.2-alpine: Debian bookworm's redis-server (7.0).
# Honours what docker-compose.yml relies on: `docker-entrypoint.sh
# redis-server CONF` started as root, which drops to the `redis` user, /data
# owned by it (a new volume copies that ownership), redis-cli, and sh.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis -m 0750 /data
COPY --chmod=0755 redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
