#!/bin/sh
# One role and one database per service (docs/ARCHITECTURE.md: one database per service).
# The postgres image runs this once, on an empty data volume
# (/docker-entrypoint-initdb.d/); it may source rather than execute it, so it
# neither exits nor changes shell options.
#
# Passwords come from files (compose secrets) that psql reads itself (\set
# with a backtick), so they never appear on a command line or in the log.
#
# Environment: POSTGRES_USER (the superuser), AUTH_DB_PASSWORD_FILE and
# USER_DB_PASSWORD_FILE; AUTH_DB and USER_DB name each role and its database
# (default idp_auth and idp_user).

idp_create_database() {
    # $1: role and database name; $2: file holding the role's password.
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname postgres \
        -v name="$1" -v pwfile="$2" <<'SQL'
\set pw `cat :'pwfile'`
CREATE ROLE :"name" LOGIN PASSWORD :'pw';
-- The service's role owns its database, and with it (PostgreSQL 15+) the
-- public schema in it: it can run its own migrations and nothing else.
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
\unset pw
SQL
}

idp_create_database "${AUTH_DB:-idp_auth}" "${AUTH_DB_PASSWORD_FILE:-/run/secrets/auth_db_password}"
idp_create_database "${USER_DB:-idp_user}" "${USER_DB_PASSWORD_FILE:-/run/secrets/user_db_password}"
