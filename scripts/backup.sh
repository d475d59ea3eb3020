#!/usr/bin/env bash
# `make backup`: dumps every application database of the running stack (the portal's and
# the app's persistent store, i.e. every non-template database but "postgres") and the role
# definitions into one timestamped archive:
#   backups/<project>-<UTC timestamp>.tar = MANIFEST, roles.sql, <database>.dump (pg_dump -Fc)
# pg_dump runs inside the db container, so the host needs no PostgreSQL client. Consistent per
# database (each pg_dump is one snapshot); the web service keeps running.
# Env: BACKUP_DIR (default backups/). Prints the archive's path on stdout.
# Commands for the db container are single-quoted on purpose: they expand there, not here.
# shellcheck disable=SC2016
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=backup

BACKUP_DIR=${BACKUP_DIR:-$REPO_ROOT/backups}

# The command runs in the db container's shell, where $POSTGRES_USER and $1 expand.
db_exec() { docker exec -i "$DB" sh -c "$1" sh "${@:2}"; }

list_databases() {
  db_exec 'psql -X -U "$POSTGRES_USER" -d postgres -At -c "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> '"'postgres'"' ORDER BY 1"'
}

dump_database() {
  local db=$1 out=$2
  log "dumping $db"
  db_exec 'pg_dump -U "$POSTGRES_USER" --format=custom --dbname="$1"' "$db" >"$out" \
    || die "pg_dump of $db failed (see the message above)"
}

main() {
  need_docker
  DB=$(service_container db)
  [[ -n $DB && $(service_state db) == healthy ]] \
    || die "the db service of '$COMPOSE_PROJECT_NAME' is not running and healthy: start the stack with 'make up' first"
  local stamp archive dbs db
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$BACKUP_DIR"
  chmod 700 "$BACKUP_DIR"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  mapfile -t dbs < <(list_databases)
  (( ${#dbs[@]} )) || die "no application database found in db: nothing to back up"
  # Role definitions without passwords: the passwords stay those of the env files.
  db_exec 'pg_dumpall -U "$POSTGRES_USER" --roles-only --no-role-passwords' >"$WORK/roles.sql" \
    || die "pg_dumpall --roles-only failed"
  for db in "${dbs[@]}"; do dump_database "$db" "$WORK/$db.dump"; done
  {
    echo "project=$COMPOSE_PROJECT_NAME"
    echo "created=$stamp"
    echo "server=$(db_exec 'psql -X -U "$POSTGRES_USER" -d postgres -At -c "SHOW server_version"')"
    echo "databases=${dbs[*]}"
  } >"$WORK/MANIFEST"
  archive=$BACKUP_DIR/$COMPOSE_PROJECT_NAME-$stamp.tar
  (umask 077; tar -C "$WORK" -cf "$archive.partial" .)
  mv "$archive.partial" "$archive"
  log "wrote $archive ($(du -h "$archive" | cut -f1): ${dbs[*]})"
  log "restore it with: make restore FILE=${archive#"$REPO_ROOT"/}"
  printf '%s\n' "$archive"
}

main "$@"
