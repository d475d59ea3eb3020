#!/usr/bin/env bash
# `make up`: builds what is missing, writes the env files on the first run, starts the stack
# and waits until every service is healthy, then prints the URL and where the admin login is.
# Honours ENV_DIR, COMPOSE_PROJECT_NAME, WEB_BIND, WEB_PORT, so a second stack (the tests')
# can run beside the first:
#   ENV_DIR=env/test COMPOSE_PROJECT_NAME=dam-inventory-test WEB_PORT=18080 scripts/up.sh
# UP_TIMEOUT (seconds, default 300) bounds the wait.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=up

UP_TIMEOUT=${UP_TIMEOUT:-300}
COMPOSE=("$REPO_ROOT/scripts/compose.sh")

expected_services() {
  local profiles
  profiles=$(env_file_get "$IMAGES_ENV" COMPOSE_PROFILES)
  printf '%s\n' db redis
  [[ ,$profiles, != *,geoserver,* ]] || printf '%s\n' geoserver
  printf '%s\n' web
}

fail_wait() {
  local s=$2
  log "ERROR: $1"
  "${COMPOSE[@]}" ps >&2 || true
  if [[ -n $s && -n $(service_container "$s") ]]; then
    log "last lines of $s's log:"
    docker logs --tail 25 "$(service_container "$s")" 2>&1 | sed 's/^/    /' >&2 || true
  fi
  log "see what went wrong with: make logs   (or: scripts/compose.sh logs --tail=100 SERVICE)"
  exit 1
}

restarts() {
  local id; id=$(service_container "$1")
  [[ -n $id ]] && docker inspect -f '{{.RestartCount}}' "$id" || echo 0
}

# A service that crashes at start is restarted forever by its restart policy: after this many
# restarts during the wait, stop waiting and show why.
MAX_RESTARTS=${MAX_RESTARTS:-3}

wait_healthy() {
  local start=$SECONDS last="" line s state all
  mapfile -t services < <(expected_services)
  declare -A restarts0
  for s in "${services[@]}"; do restarts0[$s]=$(restarts "$s"); done
  log "waiting up to ${UP_TIMEOUT}s for ${services[*]} to be healthy"
  while :; do
    all=1 line=""
    for s in "${services[@]}"; do
      state=$(service_state "$s")
      line+="$s=$state "
      case $state in
        healthy) ;;
        unhealthy|exited|dead|missing) fail_wait "$s is $state" "$s" ;;
        *) all=0
           if (( $(restarts "$s") - ${restarts0[$s]} >= MAX_RESTARTS )); then
             fail_wait "$s keeps crashing at start (restarted $MAX_RESTARTS times)" "$s"
           fi ;;
      esac
    done
    # Show the states when they change, and every 15 s anyway so a slow start looks alive.
    if [[ $line != "$last" || $(( (SECONDS - start) % 15 )) == 0 ]]; then
      log "$(( SECONDS - start ))s: $line"
      last=$line
    fi
    (( all )) && break
    (( SECONDS - start < UP_TIMEOUT )) || fail_wait "not healthy after ${UP_TIMEOUT}s: $line" ""
    sleep 1
  done
  log "all healthy after $(( SECONDS - start ))s"
}

print_welcome() {
  local host=${WEB_BIND:-127.0.0.1} port=${WEB_PORT:-8080} admin secret geoserver
  [[ $host != 0.0.0.0 ]] || host=localhost
  admin=$(env_file_get "$(env_dir_path)/web.env" PORTAL_SUPERUSER_NAME)
  secret=$(env_file_get "$(env_dir_path)/web.env" PORTAL_SUPERUSER_PASSWORD_FILE)
  secret=${secret:-${ENV_DIR%/}/secrets/portal_superuser_password}
  if [[ $(env_file_get "$IMAGES_ENV" COMPOSE_PROFILES) == *geoserver* ]]; then
    geoserver="GeoServer runs inside the stack (internal network only)."
  else
    geoserver="GeoServer is NOT part of this stack (no registry to pull it from)."
  fi
  cat >&2 <<MSG

  Dam inventory is up:  http://$host:$port/apps/dam-inventory/
  Admin login: user '${admin:-admin}', password in the file $secret
      cat $secret
  $geoserver
  Stop: make down (keeps data)   Logs: make logs   State: make ps

MSG
}

main() {
  local t0=$SECONDS
  cd "$REPO_ROOT"
  need_docker
  "$REPO_ROOT/scripts/images.sh"
  "$REPO_ROOT/scripts/gen-env.sh"
  log "starting the stack"
  "${COMPOSE[@]}" up -d --remove-orphans
  wait_healthy
  print_welcome
  log "make up took $(( SECONDS - t0 ))s"
}

main "$@"
