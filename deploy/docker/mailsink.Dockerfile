# The development mail sink of the compose stack: deploy/local/mail_sink.py,
# the same SMTP server `make run` starts. It keeps every message as one .eml
# file in the `mail` volume (read them with `docker compose exec mailsink ls
# /mail`, docs/OPERATIONS.md "Mail"). Development only: it accepts anything,
# without TLS; deploy/compose/production.yml points SMTP_URL at your relay.
#
#   docker build -f deploy/docker/mailsink.Dockerfile -t idp-mailsink .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE}
COPY --from=uv /uv /usr/local/bin/uv
# The version uv.lock pins (a development dependency: the service images do
# not carry it), in a venv of its own. UV_NATIVE_TLS: the system CA store.
ENV UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
RUN uv venv --python /usr/local/bin/python3 /opt/mailsink \
 && uv pip install --no-cache --python /opt/mailsink/bin/python "aiosmtpd==1.4.6" \
 && install -d -o 10003 -g 10003 -m 0755 /mail
COPY deploy/local/mail_sink.py /app/mail_sink.py

USER 10003:10003
EXPOSE 1025
CMD ["/opt/mailsink/bin/python", "/app/mail_sink.py", "--host", "0.0.0.0", "--port", "1025", "--dir", "/mail"]
