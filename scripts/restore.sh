#!/usr/bin/env bash
# `make restore FILE=backups/<name>.tar`: loads an archive written by scripts/backup.sh into
# the running stack. What it does, in order:
#   1. checks the archive and that db is healthy;
#   2. stops web, so nothing writes while databases are replaced;
#   3. creates the roles the archive names that are missing (no passwords: existing roles and
#      their env-file passwords are left alone);
#   4. for each database in the archive: DROP DATABASE ... WITH (FORCE), then pg_restore
#      --create (owner, extensions, data exactly as dumped);
#   5. starts web again and waits until it is healthy.
# Databases not in the archive are not touched. Non-interactive; exits non-zero on any failure.
# Commands for the db container are single-quoted on purpose: they expand there, not here.
# shellcheck disable=SC2016
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=restore

FILE=${1:-${FILE:-}}
RESTORE_TIMEOUT=${RESTORE_TIMEOUT:-300}

# The command runs in the db container's shell, where $POSTGRES_USER and $1 expand.
db_exec() { docker exec -i "$DB" sh -c "$1" sh "${@:2}"; }

check_archive() {
  [[ -n $FILE ]] || die "which backup? make restore FILE=backups/<name>.tar (ls backups/)"
  [[ -f $FILE ]] || die "$FILE: no such file"
  tar -C "$WORK" -xf "$FILE" || die "$FILE is not a readable tar archive"
  [[ -f $WORK/MANIFEST && -f $WORK/roles.sql ]] || die "$FILE was not written by scripts/backup.sh (no MANIFEST or roles.sql)"
  mapfile -t DBS < <(sed -n 's/^databases=//p' "$WORK/MANIFEST" | tr ' ' '\n' | grep .)
  (( ${#DBS[@]} )) || die "$FILE names no database"
  local db
  for db in "${DBS[@]}"; do
    [[ -s $WORK/$db.dump ]] || die "$FILE lacks $db.dump"
  done
}

WEB_WAS_UP=0
stop_web() {
  local state; state=$(service_state web)
  if [[ $state != missing && $state != exited && $state != created ]]; then
    WEB_WAS_UP=1
    log "stopping web while the databases are replaced"
    "$REPO_ROOT/scripts/compose.sh" stop web
  fi
}

create_missing_roles() {
  log "creating missing roles"
  # (stdin of docker exec is closed here: it would swallow the loop's input.)
  # Only CREATE ROLE lines, each on its own: "already exists" is expected and harmless, and
  # existing roles keep their attributes and passwords.
  grep -E '^CREATE ROLE ' "$WORK/roles.sql" | while IFS= read -r stmt; do
    db_exec 'psql -X -q -U "$POSTGRES_USER" -d postgres -c "$1" 2>&1 | grep -v "already exists" >&2 || true' "$stmt" </dev/null
  done
  # Attributes as dumped (LOGIN, CREATEDB...), never passwords.
  grep -E '^ALTER ROLE ' "$WORK/roles.sql" | grep -v -E 'PASSWORD' | while IFS= read -r stmt; do
    db_exec 'psql -X -q -U "$POSTGRES_USER" -d postgres -c "$1" >/dev/null 2>&1 || true' "$stmt" </dev/null
  done
}

restore_database() {
  local db=$1
  log "replacing database $db"
  db_exec 'psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)"' "$db" \
    || die "could not drop $db"
  db_exec 'pg_restore -U "$POSTGRES_USER" --create --exit-on-error --dbname=postgres' <"$WORK/$db.dump" \
    || die "pg_restore of $db failed; the database may be missing now: fix the cause and run the restore again"
}

start_web() {
  if (( ! WEB_WAS_UP )); then
    log "web was not running before the restore: leaving it stopped (make up starts it)"
    return 0
  fi
  log "starting web"
  "$REPO_ROOT/scripts/compose.sh" up -d --no-deps web
  local start=$SECONDS state
  while :; do
    state=$(service_state web)
    [[ $state != healthy ]] || break
    [[ $state != unhealthy && $state != exited ]] || die "web is $state after the restore: make logs"
    (( SECONDS - start < RESTORE_TIMEOUT )) || die "web not healthy after ${RESTORE_TIMEOUT}s: make logs"
    (( (SECONDS - start) % 10 )) || log "waiting for web ($state, $(( SECONDS - start ))s)"
    sleep 1
  done
  log "web is healthy again ($(( SECONDS - start ))s)"
}

main() {
  need_docker
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  check_archive
  DB=$(service_container db)
  [[ -n $DB && $(service_state db) == healthy ]] \
    || die "the db service of '$COMPOSE_PROJECT_NAME' is not running and healthy: start the stack with 'make up' first"
  log "restoring $(sed -n 's/^created=//p' "$WORK/MANIFEST") from $FILE into '$COMPOSE_PROJECT_NAME': ${DBS[*]}"
  stop_web
  create_missing_roles
  local db
  for db in "${DBS[@]}"; do restore_database "$db"; done
  start_web
  log "restore done"
}

main "$@"
