#!/usr/bin/env bash
# `make clean CONFIRM=1`: removes the stack's containers AND its data volumes (database,
# Redis, GeoServer data, Tethys persist). Without CONFIRM=1 it only says what it would delete.
# The env files (and so the secrets) are kept: the next `make up` starts empty with them.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=clean

CONFIRM=${1:-${CONFIRM:-}}

project_volumes() {
  docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
}

main() {
  need_docker
  if [[ $CONFIRM != 1 ]]; then
    log "this would delete the stack '$COMPOSE_PROJECT_NAME' and ALL its data volumes:"
    project_volumes | sed 's/^/    /' >&2
    log "nothing deleted. To really do it: make clean CONFIRM=1   (make backup first?)"
    exit 2
  fi
  log "removing the stack '$COMPOSE_PROJECT_NAME' and its volumes"
  # Every profile, so a GeoServer container and volume go too.
  COMPOSE_PROFILES=geoserver "$REPO_ROOT/scripts/compose.sh" down --volumes --remove-orphans
  log "done; env files in $ENV_DIR are kept (delete them too for new secrets)"
}

main "$@"
