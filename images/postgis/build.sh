#!/usr/bin/env bash
# Builds dam-inventory/postgis:15-3 (PostgreSQL 15 + PostGIS 3 from Debian packages) on the
# local Debian base, for machines where postgis/postgis cannot be pulled.
# Usage: images/postgis/build.sh [IMAGE]   (env BASE_IMAGE, default dam-inventory/debian:bookworm)
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/lib.sh
source "$HERE/../../scripts/lib.sh"
LOG_TAG=postgis

IMAGE=${1:-$LOCAL_DB_IMAGE}
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}

main() {
  need_docker
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
    || die "base image $BASE_IMAGE missing: run images/base/build.sh first"
  local d
  d=$(inputs_digest "$HERE/Dockerfile" "$HERE/docker-entrypoint.sh" "$HERE/initdb-postgis.sh" \
        "base=$(image_id "$BASE_IMAGE")")
  if image_is_current "$IMAGE" "$d"; then
    log "$IMAGE is up to date"
    return 0
  fi
  log "building $IMAGE from $BASE_IMAGE: PostgreSQL 15 + PostGIS 3 from Debian packages (a few minutes the first time)"
  docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --label "org.dam-inventory.inputs=$d" -t "$IMAGE" "$HERE" >/dev/null \
    || die "building $IMAGE failed: run 'docker build $HERE' to see the whole output"
  log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

main "$@"
