# The gateway: stock nginx serving deploy/nginx/gateway.conf.template, the same
# file `make run` renders. The image's entrypoint renders templates with
# envsubst (/docker-entrypoint.d/20-envsubst-on-templates.sh); the filter keeps
# it to the template's own placeholders, so nginx variables ($host, ...) stay.
#
#   docker build -f deploy/docker/gateway.Dockerfile -t idp-gateway .
#   docker run -e AUTH_UPSTREAM=auth:8001 -e USER_UPSTREAM=user:8002 -p 8000:8000 idp-gateway
#
# Pin the digest as well for reproducible builds (see service.Dockerfile).
ARG NGINX_IMAGE=nginx:1.28.0-alpine
FROM ${NGINX_IMAGE}

# Everything nginx writes lives under the prefix: rendered config, pid, temp
# dirs, the access log (a link to stdout). Mount a tmpfs / emptyDir there and
# the root filesystem can be read-only.
ENV GATEWAY_PREFIX=/var/run/gateway \
    NGINX_ENVSUBST_TEMPLATE_DIR=/etc/nginx/templates \
    NGINX_ENVSUBST_OUTPUT_DIR=/var/run/gateway \
    NGINX_ENVSUBST_FILTER='^(AUTH_UPSTREAM|USER_UPSTREAM|LISTEN_PORT)$' \
    AUTH_UPSTREAM=auth:8001 \
    USER_UPSTREAM=user:8002 \
    LISTEN_PORT=8000

RUN rm -f /etc/nginx/conf.d/default.conf \
 && install -d -o nginx -g nginx -m 0700 /var/run/gateway \
 && install -d -o nginx -g nginx -m 0755 /var/run/gateway-metrics \
 && install -d -m 0755 /etc/nginx/templates
COPY deploy/nginx/gateway.conf.template /etc/nginx/templates/gateway.conf.template
COPY --chmod=0755 deploy/docker/gateway/05-gateway-prefix.sh /docker-entrypoint.d/05-gateway-prefix.sh

# Unprivileged: the template listens on a high port and sets no `user`.
USER nginx
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD wget -q -O /dev/null "http://127.0.0.1:${LISTEN_PORT##*:}/healthz" || exit 1
STOPSIGNAL SIGQUIT
CMD ["nginx", "-e", "stderr", "-p", "/var/run/gateway/", "-c", "gateway.conf"]
