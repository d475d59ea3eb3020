#!/usr/bin/env bash
# A project-local PostgreSQL 15 + PostGIS 3 cluster from Debian packages, for `make unit` and
# `make dev` on a machine without Docker.
#
# Usage: scripts/local-postgis.sh start|stop|status|env [NAME]
#   NAME (default "pg") picks the cluster: data in .local/NAME/data, so the unit tests (NAME=pg-unit)
#   never touch the data of `make dev` (NAME=pg).
#   start   installs the packages if missing, creates the cluster once, starts it on a free
#           127.0.0.1 port (the same port again while it stays free) and prints `env` output.
#   env     prints shell assignments: PGHOST PGPORT PGUSER PGPASSWORD (source it with eval).
#
# PostgreSQL refuses to run as root, so the server runs as the `postgres` system user. The
# superuser password is random, generated once into .local/NAME/password (never committed).
set -Eeuo pipefail

PG_VERSION=15   # Debian 12's PostgreSQL; postgis 3 is packaged for it as postgresql-15-postgis-3
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)

log() { echo "[local-postgis] $*" >&2; }
die() { echo "[local-postgis] ERROR: $*" >&2; exit 1; }

cluster_paths() {
  local name=$1
  BASE=$ROOT/.local/$name
  DATA=$BASE/data
  PWFILE=$BASE/password
  PORTFILE=$BASE/port
  LOGFILE=$BASE/server.log
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  elif [[ $(id -un) == postgres ]]; then
    "$@"
  else
    die "run as root (the server is started as the postgres user) or as postgres"
  fi
}

ensure_packages() {
  if [[ -x $PG_BIN/initdb && -f /usr/share/postgresql/$PG_VERSION/extension/postgis.control ]]; then
    return
  fi
  [[ $(id -u) -eq 0 ]] || die "postgresql-$PG_VERSION and postgresql-$PG_VERSION-postgis-3 are missing: install them as root (apt-get install postgresql-$PG_VERSION postgresql-$PG_VERSION-postgis-3)"
  log "installing postgresql-$PG_VERSION postgresql-$PG_VERSION-postgis-3 with apt-get (about a minute)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "postgresql-$PG_VERSION" "postgresql-$PG_VERSION-postgis-3" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends "postgresql-$PG_VERSION" "postgresql-$PG_VERSION-postgis-3" >/dev/null; } \
    || die "apt-get could not install PostgreSQL/PostGIS; check the apt sources and network"
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

port_is_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

init_cluster() {
  [[ -f $DATA/PG_VERSION ]] && return
  log "creating cluster in $DATA"
  mkdir -p "$BASE"
  chown postgres:postgres "$BASE" 2>/dev/null || true
  chmod 700 "$BASE"
  if [[ ! -s $PWFILE ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$PWFILE")
  fi
  chown postgres:postgres "$PWFILE" 2>/dev/null || true
  # Local socket: peer (only the postgres OS user); TCP on loopback: password.
  as_postgres "$PG_BIN/initdb" -D "$DATA" -U postgres --pwfile="$PWFILE" \
    --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
}

is_running() {
  [[ -f $DATA/postmaster.pid ]] && as_postgres "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start_cluster() {
  ensure_packages
  init_cluster
  if is_running; then
    log "already running on port $(cat "$PORTFILE")"
    return
  fi
  local port
  port=$(cat "$PORTFILE" 2>/dev/null || true)
  if [[ -z $port ]] || ! port_is_free "$port"; then
    port=$(free_port)
  fi
  echo "$port" >"$PORTFILE"
  log "starting PostgreSQL $PG_VERSION on 127.0.0.1:$port (log: $LOGFILE)"
  touch "$LOGFILE" && chown postgres:postgres "$LOGFILE" 2>/dev/null || true
  # Sockets in the data dir: no clash with a system cluster in /var/run/postgresql.
  # fsync=off: a throw-away dev/test cluster, speed matters more than crash safety here.
  as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 \
    -o "-p $port -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || die "PostgreSQL did not start; see $LOGFILE"
}

stop_cluster() {
  if is_running; then
    log "stopping the cluster in $DATA"
    as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  fi
}

print_env() {
  [[ -s $PORTFILE && -s $PWFILE ]] || die "cluster $BASE not created yet: run $0 start"
  printf 'export PGHOST=127.0.0.1 PGPORT=%q PGUSER=postgres PGPASSWORD=%q\n' \
    "$(cat "$PORTFILE")" "$(cat "$PWFILE")"
}

main() {
  local cmd=${1:-}
  cluster_paths "${2:-pg}"
  case $cmd in
    start) start_cluster; print_env ;;
    stop) stop_cluster ;;
    status) if is_running; then echo "running on port $(cat "$PORTFILE")"; else echo stopped; exit 3; fi ;;
    env) print_env ;;
    *) die "usage: $0 start|stop|status|env [NAME]" ;;
  esac
}

main "$@"
