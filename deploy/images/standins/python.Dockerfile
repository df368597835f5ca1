# Stand-in for python:3.11.13-slim-bookworm: Debian bookworm's python3 (3.11).
# Honours what deploy/docker/service.Dockerfile relies on: python3 and python
# at /usr/local/bin, groupadd/useradd, and a CA bundle for uv.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python3 \
 && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
