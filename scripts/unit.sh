#!/usr/bin/env bash
# `make unit`: the app's tests (tests/unit/) against a real PostgreSQL + PostGIS from Debian
# packages, in a project-local cluster (.local/pg-unit) on a free loopback port.
# The cluster is left running for the next run (fast); KEEP_PG=0 stops it afterwards.
# Extra arguments go to pytest, e.g. scripts/unit.sh -k consumer -x
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLUSTER=pg-unit

log() { echo "[unit] $*" >&2; }

start_db() {
  log "starting the local PostgreSQL + PostGIS cluster ($CLUSTER)"
  eval "$(scripts/local-postgis.sh start "$CLUSTER")"
  # Tethys harvests the apps (and registers their URLs) when Django starts, before pytest-django
  # creates its test database; harvesting needs the configured database to exist (empty is
  # enough), otherwise the app's URLs are silently missing.
  if [[ -z $(psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'tethys_unit'" </dev/null) ]]; then
    createdb tethys_unit </dev/null
  fi
}

stop_db() {
  if [[ ${KEEP_PG:-1} == 0 ]]; then scripts/local-postgis.sh stop "$CLUSTER"; fi
}

ensure_chromium() {
  # tests/unit/test_js_client.py runs the JS client in Debian's chromium (never `playwright install`).
  [[ -x /usr/bin/chromium ]] && return
  [[ $(id -u) -eq 0 ]] || { log "chromium is missing: install it with apt-get install chromium"; return; }
  log "installing chromium with apt-get (about 30 s)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || log "could not install chromium: the JS client tests will fail"
}

write_portal_config() {
  # A throw-away TETHYS_HOME: tethys_portal.settings reads portal_config.yml from it.
  TETHYS_HOME=$(mktemp -d "${TMPDIR:-/tmp}/dam-unit-tethys.XXXXXX")
  export TETHYS_HOME
  cat >"$TETHYS_HOME/portal_config.yml" <<YAML
settings:
  SECRET_KEY: "$(python3 -c 'import secrets; print(secrets.token_urlsafe(40))')"
  DEBUG: false
  ALLOWED_HOSTS: [testserver, localhost, 127.0.0.1, portal.example.org]
  DATABASES:
    default:
      ENGINE: django.db.backends.postgresql
      NAME: tethys_unit
      USER: postgres
      PASSWORD: "$PGPASSWORD"
      HOST: 127.0.0.1
      PORT: $PGPORT
YAML
}

cleanup() {
  [[ -n ${TETHYS_HOME:-} && -d ${TETHYS_HOME:-} ]] && rm -rf "$TETHYS_HOME"
  stop_db
}

main() {
  local bin
  bin=$(scripts/venv.sh)
  start_db
  trap cleanup EXIT
  ensure_chromium
  write_portal_config
  # The app is imported from the source tree (tethysapp is a namespace package): the shared
  # venv is not modified. The wheel test builds and inspects the installable package.
  export PYTHONPATH="$ROOT/app${PYTHONPATH:+:$PYTHONPATH}"
  export DJANGO_SETTINGS_MODULE=tethys_portal.settings
  export PATH="$bin:$PATH"
  log "running pytest tests/unit"
  # -p no:cacheprovider: keep the tree clean; --strict-markers: typos in marks fail.
  "$bin/python" -m pytest -p no:cacheprovider --strict-markers -c tests/unit/pytest.ini \
    --rootdir "$ROOT" "$@"
}

main "$@"
