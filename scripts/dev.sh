#!/usr/bin/env bash
# `make dev`: the portal with the dam inventory app on this machine, without Docker.
#   one process (Django's runserver, which daphne turns into an ASGI server), in-memory channel
#   layer, a project-local PostgreSQL + PostGIS (.local/pg) from Debian packages.
#
# Usage: scripts/dev.sh          set up (idempotent) and run in the foreground (Ctrl-C stops)
#        scripts/dev.sh check    set up, start in the background, prove that the app page
#                                 serves after login and that the WebSocket connects, stop
# Env:   DEV_PORT (default 8000), MAX_DAMS (optional value of the app's max_dams setting),
#        KEEP_PG=0 to stop PostgreSQL when the portal stops.
# State: .local/tethys (TETHYS_HOME: portal_config.yml), .local/dev-secrets, .local/dev-admin.txt
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOCAL=$ROOT/.local
DEV_PORT=${DEV_PORT:-8000}
ADMIN_USER=admin
DB_NAME=tethys_platform
DB_USER=tethys_default
PS_SERVICE=dev_primary

log() { echo "[dev] $*" >&2; }
die() { echo "[dev] ERROR: $*" >&2; exit 1; }

secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# A generated value kept in a 0600 file under .local (never committed), made once.
stored_secret() {
  local file=$1
  if [[ ! -s $file ]]; then (umask 077; secret >"$file"); fi
  cat "$file"
}

setup_env() {
  mkdir -p "$LOCAL/tethys"
  local bin
  bin=$(scripts/venv.sh)
  # `tethys install -d` and the tethys CLI's own subprocesses need the venv first on PATH.
  export PATH="$bin:$PATH" VIRTUAL_ENV="$ROOT/.venv"
  export TETHYS_HOME="$LOCAL/tethys"
  eval "$(scripts/local-postgis.sh start pg)"
  # tethys db create/configure connect as role postgres with no password of their own.
  export PGPASSWORD
}

write_portal_config() {
  local cfg=$TETHYS_HOME/portal_config.yml db_password secret_key
  if [[ ! -f $cfg ]]; then
    log "generating $cfg"
    tethys gen portal_config -d "$TETHYS_HOME" </dev/null >/dev/null
  fi
  db_password=$(stored_secret "$LOCAL/dev-db-password")
  secret_key=$(stored_secret "$LOCAL/dev-secret-key")
  # Every run: the port of the local cluster may have changed.
  tethys settings \
    --set SECRET_KEY "$secret_key" \
    --set DEBUG true \
    --set ALLOWED_HOSTS "['localhost', '127.0.0.1']" \
    --set CSRF_TRUSTED_ORIGINS "['http://localhost:$DEV_PORT', 'http://127.0.0.1:$DEV_PORT']" \
    --set DATABASES.default.ENGINE django.db.backends.postgresql \
    --set DATABASES.default.NAME "$DB_NAME" \
    --set DATABASES.default.USER "$DB_USER" \
    --set DATABASES.default.PASSWORD "$db_password" \
    --set DATABASES.default.HOST 127.0.0.1 \
    --set DATABASES.default.PORT "$PGPORT" \
    --set CHANNEL_LAYERS.default.BACKEND channels.layers.InMemoryChannelLayer \
    </dev/null >/dev/null
}

create_portal_db() {
  local exists
  exists=$(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" </dev/null)
  if [[ -z $exists ]]; then
    log "creating the portal database $DB_NAME"
    # stdin closed: without it createdb can wait forever at a Password: prompt.
    # -N/-P: otherwise tethys creates the role tethys_super with its well-known default password.
    tethys db create -n "$DB_USER" -p "$(cat "$LOCAL/dev-db-password")" \
      -N tethys_super -P "$(stored_secret "$LOCAL/dev-db-super-password")" </dev/null
  fi
  log "migrating the portal database"
  tethys db migrate </dev/null >/dev/null
}

create_admin() {
  local password
  password=$(stored_secret "$LOCAL/dev-admin.txt")
  if ! python3 - "$ADMIN_USER" <<'EOF' >/dev/null 2>&1
import sys, django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tethys_portal.settings")
django.setup()
from django.contrib.auth.models import User
sys.exit(0 if User.objects.filter(username=sys.argv[1]).exists() else 1)
EOF
  then
    log "creating the portal admin '$ADMIN_USER'"
    tethys db createsuperuser --pn "$ADMIN_USER" --pe "$ADMIN_USER@localhost" --pp "$password" </dev/null >/dev/null
  fi
}

install_app() {
  if ! python -c 'import tethysapp.dam_inventory' 2>/dev/null \
     || [[ $(python -c 'import tethysapp.dam_inventory as m; print(m.__file__)') != "$ROOT/app/"* ]]; then
    log "installing the app in editable mode (pip install -e app)"
    pip install --quiet --no-deps -e app </dev/null
  fi
  # Registers the app (and its settings and permissions) in the portal database.
  tethys db sync </dev/null >/dev/null
}

link_store() {
  log "linking the persistent store primary_db to the local PostGIS"
  # Re-created every run so a changed port or password is picked up; removing the service
  # drops the link, which is made again right below.
  tethys services remove persistent "$PS_SERVICE" -f </dev/null >/dev/null 2>&1 || true
  tethys services create persistent -n "$PS_SERVICE" -c "postgres:$PGPASSWORD@127.0.0.1:$PGPORT" </dev/null >/dev/null
  tethys link "persistent:$PS_SERVICE" dam_inventory:ps_database:primary_db </dev/null >/dev/null
  if [[ -n ${MAX_DAMS:-} ]]; then
    tethys app_settings set dam_inventory max_dams "$MAX_DAMS" </dev/null >/dev/null
  fi
  tethys syncstores dam_inventory </dev/null >/dev/null
}

print_login() {
  cat >&2 <<EOF
[dev] ------------------------------------------------------------------
[dev]  URL:      http://127.0.0.1:$DEV_PORT/apps/dam-inventory/
[dev]  login:    $ADMIN_USER / $(cat "$LOCAL/dev-admin.txt")   (saved in .local/dev-admin.txt)
[dev] ------------------------------------------------------------------
EOF
}

run_portal() {
  print_login
  trap 'if [[ ${KEEP_PG:-1} == 0 ]]; then scripts/local-postgis.sh stop pg; fi' EXIT
  tethys manage start -p "127.0.0.1:$DEV_PORT"
}

wait_http() {
  local i
  for i in $(seq 1 60); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$DEV_PORT/accounts/login/" 2>/dev/null; then return 0; fi
    (( i % 10 == 0 )) && log "waiting for the portal to answer ($i s)"
    sleep 1
  done
  return 1
}

check_portal() {
  local logfile=$LOCAL/dev-check.log pid rc=0
  log "starting the portal in the background (log: $logfile)"
  # Job control on: the background job gets its own process group (id = $pid), so the
  # autoreloader's child can be stopped together with it, and nothing else.
  set -m
  tethys manage start -p "127.0.0.1:$DEV_PORT" >"$logfile" 2>&1 </dev/null &
  pid=$!
  set +m
  # runserver forks an autoreloader child: stop the whole session we started, by its id.
  trap 'kill -- -'"$pid"' 2>/dev/null || true' EXIT
  wait_http || { tail -20 "$logfile" >&2; die "the portal did not answer on port $DEV_PORT"; }
  python3 scripts/dev_check.py "http://127.0.0.1:$DEV_PORT" "$ADMIN_USER" "$(cat "$LOCAL/dev-admin.txt")" || rc=$?
  kill -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  trap - EXIT
  log "portal stopped"
  return "$rc"
}

main() {
  setup_env
  write_portal_config
  create_portal_db
  create_admin
  install_app
  link_store
  case ${1:-run} in
    run) run_portal ;;
    check) check_portal ;;
    *) die "usage: $0 [run|check]" ;;
  esac
}

main "$@"
