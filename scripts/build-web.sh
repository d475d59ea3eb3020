#!/usr/bin/env bash
# Builds the web image (dam-inventory/web:latest by default). Fills the host-side wheelhouse
# first (scripts/wheelhouse.sh), so the build itself downloads no Python package.
#   scripts/build-web.sh [extra docker build args...]
# env: BASE_IMAGE (default: dam-inventory/debian:bookworm if present, else debian:bookworm-slim),
#      WEB_IMAGE (default dam-inventory/web:latest)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEB_IMAGE=${WEB_IMAGE:-dam-inventory/web:latest}
LOCAL_BASE=dam-inventory/debian:bookworm

log() { printf '[build-web] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pick_base_image() {
  if [[ -n ${BASE_IMAGE:-} ]]; then
    printf '%s' "$BASE_IMAGE"
  elif docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    printf '%s' "$LOCAL_BASE"
  else
    printf '%s' debian:bookworm-slim
  fi
}

# BuildKit when the docker CLI has buildx (parallel stages); the classic builder otherwise,
# which is also what docker-compose v1 uses: the Dockerfile works with both.
buildkit_setting() {
  if [[ -n ${DOCKER_BUILDKIT:-} ]]; then
    printf '%s' "$DOCKER_BUILDKIT"
  elif docker buildx version >/dev/null 2>&1; then
    printf 1
  else
    printf 0
  fi
}

main() {
  command -v docker >/dev/null || die "docker is not installed"
  [[ -f $ROOT/app/pyproject.toml ]] || die "app/pyproject.toml is missing: the image installs the app from app/"
  "$ROOT/scripts/wheelhouse.sh"
  local base
  base=$(pick_base_image)
  log "building $WEB_IMAGE from $base (first build about 3 minutes; cached rebuilds seconds)"
  local started=$SECONDS
  DOCKER_BUILDKIT=$(buildkit_setting) docker build \
    --build-arg BASE_IMAGE="$base" -t "$WEB_IMAGE" -f "$ROOT/Dockerfile" "$@" "$ROOT"
  log "built $WEB_IMAGE in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$WEB_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

main "$@"
