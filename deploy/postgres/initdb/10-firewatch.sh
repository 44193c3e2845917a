#!/bin/bash
# The firewatch database, its owner and Grafana's read-only role.
#
# The postgres image runs the scripts in /docker-entrypoint-initdb.d once, when its data volume is
# still empty, as the superuser ($POSTGRES_USER). Later changes of the passwords in .env do not reach
# an existing database: change them with ALTER ROLE (docs/deploy.md).
#
#   FW_DB_NAME, FW_DB_OWNER, FW_DB_OWNER_PASSWORD   the database firewatch migrates and writes; its
#                                                  owner creates every table (Alembic, at start)
#   POSTGRES_READER_USER, POSTGRES_READER_PASSWORD  Grafana's datasource: may read every table, now
#                                                  and later (default privileges), write none
#
# Values reach SQL only as psql variables (:'x' quotes a literal, :"x" an identifier), never pasted
# into the statement text, so a quote in a password cannot change the SQL.
set -euo pipefail

: "${FW_DB_NAME:?FW_DB_NAME is not set}"
: "${FW_DB_OWNER:?FW_DB_OWNER is not set}"
: "${FW_DB_OWNER_PASSWORD:?FW_DB_OWNER_PASSWORD is not set}"
: "${POSTGRES_READER_USER:?POSTGRES_READER_USER is not set}"
: "${POSTGRES_READER_PASSWORD:?POSTGRES_READER_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
    --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
    -v db="$FW_DB_NAME" -v owner="$FW_DB_OWNER" -v owner_password="$FW_DB_OWNER_PASSWORD" \
    -v reader="$POSTGRES_READER_USER" -v reader_password="$POSTGRES_READER_PASSWORD" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
CREATE DATABASE :"db" OWNER :"owner" ENCODING 'UTF8' TEMPLATE template0;
CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password' NOSUPERUSER NOCREATEDB NOCREATEROLE;

-- Only these two roles (and the superuser) may connect to the database.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"owner";
GRANT CONNECT ON DATABASE :"db" TO :"reader";

-- A dashboard cannot write, and a heavy query is stopped before it slows the alarm writer.
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '30s';

\connect :"db"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
-- Tables the owner creates later (every migration) are readable by the reader too.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL
