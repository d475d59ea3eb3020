#!/usr/bin/env bash
# PostgreSQL entrypoint with the env contract of the official postgres image:
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE  superuser password (required unless
#                                               POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER (postgres), POSTGRES_DB (= POSTGRES_USER), POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD (scram-sha-256), PGDATA
# On an empty PGDATA it runs initdb, creates POSTGRES_DB, runs /docker-entrypoint-initdb.d/*
# (*.sh, *.sql, *.sql.gz) against a server listening on the socket only, then starts the real
# server listening on every address. Other commands are run as given.
set -Eeuo pipefail

log() { printf 'postgres entrypoint: %s\n' "$*" >&2; }
die() { printf 'postgres entrypoint: ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../file_env.sh
source /usr/local/lib/file_env.sh

setup_env() {
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER
  file_env POSTGRES_DB
  export POSTGRES_USER=${POSTGRES_USER:-postgres}
  export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
  export POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  [[ $(id -u) != 0 ]] || die "run as the postgres user, not root (the image's USER is postgres)"
}

cluster_exists() { [[ -s $PGDATA/PG_VERSION ]]; }

check_password_given() {
  if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
    die "the database is uninitialized and no superuser password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
  fi
}

init_cluster() {
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA" 2>/dev/null || die "cannot take $PGDATA: it must be owned by uid $(id -u)"
  log "initializing a new cluster in $PGDATA"
  local -a args
  read -r -a args <<<"${POSTGRES_INITDB_ARGS:-}"
  # Password through a pipe, never argv or a file left behind.
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust \
    --auth-host="$POSTGRES_HOST_AUTH_METHOD" "${args[@]}" >/dev/null
  # Only the container's own socket is trusted; every network client needs the password.
  printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
}

temp_server_start() {
  # Socket only: nobody can reach a half-initialized database over the network.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w -s start
}
temp_server_stop() { pg_ctl -D "$PGDATA" -m fast -w -s stop; }

psql_init() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}
export -f psql_init

create_default_db() {
  [[ $POSTGRES_DB != postgres ]] || return 0
  log "creating database $POSTGRES_DB"
  psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
}

run_init_scripts() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        if [[ -x $f ]]; then log "running $f"; "$f"
        else log "sourcing $f"; # shellcheck disable=SC1090
          source "$f"; fi ;;
      *.sql) log "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
      *) [[ ! -e $f ]] || log "ignoring $f" ;;
    esac
  done
}

first_start() {
  check_password_given
  init_cluster
  temp_server_start
  create_default_db
  run_init_scripts
  temp_server_stop
  log "init done; starting PostgreSQL"
}

main() {
  if [[ $# -eq 0 || ${1:0:1} == - ]]; then
    set -- postgres "$@"
  fi
  if [[ $1 == postgres ]]; then
    setup_env
    cluster_exists || first_start
    unset POSTGRES_PASSWORD
  fi
  exec "$@"
}

main "$@"
