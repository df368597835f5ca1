# Stand-in for postgres:16.9-alpine: Debian bookworm's PostgreSQL 15 (Debian
# packages no 16). Honours what docker-compose.yml relies on: started as root,
# the entrypoint initialises an empty PGDATA as the postgres user with
# POSTGRES_USER / POSTGRES_DB / POSTGRES_PASSWORD(_FILE), runs
# /docker-entrypoint-initdb.d/ with the server on its socket only, then serves
# on TCP with password (scram) authentication; pg_isready and psql on PATH.
# Its data volume is a PostgreSQL 15 one: keep it with this image.
FROM debian:bookworm-slim
# The postgres user has the official image's uid 70 (the secrets it reads
# belong to that uid: deploy/compose/init_secrets.py); the package keeps it.
RUN groupadd --system --gid 70 postgres \
 && useradd --system --uid 70 --gid 70 --home-dir /var/lib/postgresql --no-create-home \
        --shell /bin/bash postgres \
 && install -d /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d /docker-entrypoint-initdb.d
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
