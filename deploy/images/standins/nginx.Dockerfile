# Stand-in for nginx:1.28.0-alpine: Debian bookworm's nginx (1.22, the one
# `make run` uses). Honours what deploy/docker/gateway.Dockerfile relies on:
# the `nginx` user (uid 101 as there), /docker-entrypoint.sh running /docker-entrypoint.d/*.sh,
# the NGINX_ENVSUBST_* template rendering, and wget for the healthcheck.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends nginx gettext-base wget >/dev/null \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && groupadd --system --gid 101 nginx && useradd --system --uid 101 --gid nginx --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx \
 && install -d /docker-entrypoint.d /etc/nginx/conf.d
COPY --chmod=0755 nginx-entrypoint.sh /docker-entrypoint.sh
COPY --chmod=0755 nginx-envsubst.sh /docker-entrypoint.d/20-envsubst-on-templates.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
