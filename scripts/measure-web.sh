#!/usr/bin/env bash
# Measures the web image on this machine: image size, first start to healthy (empty database:
# roles, migrations, app database), restart to healthy (everything in place), and a restart
# after changing ASGI_PROCESSES. Runs a throwaway db + redis + web on a private network of its
# own (nothing published) and removes all of it at the end.
#   scripts/measure-web.sh      (images: WEB_IMAGE, DB_IMAGE, REDIS_IMAGE; see defaults below)
# Timings include the HEALTHCHECK's 2 s polling and depend on what else runs on the machine:
# note the load average printed with them.
set -Eeuo pipefail

WEB_IMAGE=${WEB_IMAGE:-dam-inventory/web:latest}
DB_IMAGE=${DB_IMAGE:-dam-inventory/postgis:15-3}
REDIS_IMAGE=${REDIS_IMAGE:-dam-inventory/redis:5.0.7}
NAME=${MEASURE_NAME:-dam-web-measure}
TIMEOUT=${MEASURE_TIMEOUT:-240}

log() { printf '[measure-web] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
  docker rm -f "$NAME-web" "$NAME-db" "$NAME-redis" >/dev/null 2>&1 || true
  docker volume rm "$NAME-persist" >/dev/null 2>&1 || true
  docker network rm "$NAME" >/dev/null 2>&1 || true
}

random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }

# Seconds (one decimal) until the container's health is "healthy"; fails on "unhealthy".
wait_healthy() {
  local container=$1 start=$2 status
  while true; do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null || echo missing)
    case $status in
      healthy) break ;;
      unhealthy|missing) docker logs --tail 40 "$container" >&2 || true; die "$container is $status" ;;
    esac
    if (( $(date +%s) - ${start%.*} > TIMEOUT )); then
      docker logs --tail 40 "$container" >&2 || true
      die "$container not healthy after ${TIMEOUT} s"
    fi
    sleep 0.5
  done
  awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'
}

start_backing_services() {
  docker network create --internal "$NAME" >/dev/null
  docker run -d --name "$NAME-db" --network "$NAME" --network-alias db --user postgres \
    -e POSTGRES_PASSWORD="$PG_PASSWORD" "$DB_IMAGE" >/dev/null
  docker run -d --name "$NAME-redis" --network "$NAME" --network-alias redis --user redis \
    -e REDIS_PASSWORD="$REDIS_PASSWORD" --entrypoint sh "$REDIS_IMAGE" \
    -ec 'printf "requirepass %s\n" "$REDIS_PASSWORD" | exec redis-server - --dir /data --appendonly yes' >/dev/null
  log "waiting for db and redis to be healthy"
  wait_healthy "$NAME-db" "$(date +%s.%N)" >/dev/null
  wait_healthy "$NAME-redis" "$(date +%s.%N)" >/dev/null
}

run_web() {
  docker run -d --name "$NAME-web" --network "$NAME" -v "$NAME-persist:/var/lib/tethys_persist" \
    -e SECRET_KEY="$(random_secret)" -e POSTGRES_PASSWORD="$PG_PASSWORD" \
    -e TETHYS_DB_PASSWORD="$(random_secret)" -e TETHYS_DB_SUPERUSER_PASS="$(random_secret)" \
    -e PORTAL_SUPERUSER_PASSWORD="$(random_secret)" -e REDIS_PASSWORD="$REDIS_PASSWORD" \
    -e ASGI_PROCESSES="${1:-2}" "$WEB_IMAGE" >/dev/null
}

main() {
  for image in "$WEB_IMAGE" "$DB_IMAGE" "$REDIS_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 || die "image $image missing: run scripts/images.sh"
  done
  trap cleanup EXIT
  cleanup
  PG_PASSWORD=$(random_secret) REDIS_PASSWORD=$(random_secret)
  start_backing_services

  local size first stop restart changed t0 load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  size=$(docker image inspect -f '{{.Size}}' "$WEB_IMAGE" | awk '{printf "%.0f", $1/1e6}')

  log "first start (empty database)"
  t0=$(date +%s.%N); run_web 2
  first=$(wait_healthy "$NAME-web" "$t0")

  log "restart (nothing to do): stop, then start"
  t0=$(date +%s.%N); docker stop "$NAME-web" >/dev/null
  stop=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  t0=$(date +%s.%N); docker start "$NAME-web" >/dev/null
  restart=$(wait_healthy "$NAME-web" "$t0")

  log "restart with ASGI_PROCESSES=3 (new container, same database and volume)"
  docker rm -f "$NAME-web" >/dev/null
  t0=$(date +%s.%N); run_web 3
  changed=$(wait_healthy "$NAME-web" "$t0")
  docker exec "$NAME-web" tethys-healthcheck >&2

  printf 'load average before/after:          %s / %s\n' "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'image size:                         %s MB\n' "$size"
  printf 'first start to healthy:             %s s\n' "$first"
  printf 'stop (SIGTERM to exit):             %s s\n' "$stop"
  printf 'restart: start to healthy:          %s s\n' "$restart"
  printf 'recreate with ASGI_PROCESSES=3:     %s s\n' "$changed"
}

main "$@"
