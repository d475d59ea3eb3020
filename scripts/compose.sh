#!/usr/bin/env bash
# Runs compose for this stack with everything it needs in its environment:
#   - `docker compose` (v2) when the plugin exists, else `docker-compose` (v1.29); says which
#   - project ${COMPOSE_PROJECT_NAME:-dam-inventory}, env files from ${ENV_DIR:-env}
#   - the image choice of scripts/images.sh (build/images.env: registry or local images)
# Usage: scripts/compose.sh ARGS...     e.g. scripts/compose.sh ps
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=compose

pick_compose() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
  else
    die "neither 'docker compose' (v2 plugin) nor 'docker-compose' is installed: install one (Debian: apt-get install docker-compose)"
  fi
  # Once per top-level command: nested calls (up.sh -> compose.sh) inherit the flag.
  if [[ -z ${DAM_COMPOSE_ANNOUNCED:-} ]]; then
    log "using '${COMPOSE[*]}' ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?')), project $COMPOSE_PROJECT_NAME, env $ENV_DIR"
    export DAM_COMPOSE_ANNOUNCED=1
  fi
}

# A variable already set in the caller's environment wins over the recorded choice.
load_image_choice() {
  [[ -f $IMAGES_ENV ]] || return 0
  local key value
  while IFS='=' read -r key value; do
    [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    [[ -n ${!key+set} ]] || export "$key=$value"
  done <"$IMAGES_ENV"
}

main() {
  cd "$REPO_ROOT"
  pick_compose
  load_image_choice
  exec "${COMPOSE[@]}" --project-name "$COMPOSE_PROJECT_NAME" --file "$REPO_ROOT/docker-compose.yml" "$@"
}

main "$@"
