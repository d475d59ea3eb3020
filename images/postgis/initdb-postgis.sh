#!/usr/bin/env bash
# Sourced by docker-entrypoint.sh on the first start only. Like postgis/postgis: a
# template_postgis database and the default database both get PostGIS and its companions.
set -Eeuo pipefail

postgis_extensions() {
  psql_init --dbname "$1" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS postgis_topology;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE EXTENSION IF NOT EXISTS postgis_tiger_geocoder;
SQL
}

psql_init --dbname postgres <<'SQL'
CREATE DATABASE template_postgis IS_TEMPLATE true;
SQL
for db in template_postgis "$POSTGRES_DB"; do
  echo "initdb-postgis: loading PostGIS into $db"
  postgis_extensions "$db"
done
