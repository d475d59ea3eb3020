# Shared helpers for scripts/*.sh and images/*/build.sh. Source it, do not run it.
# shellcheck shell=bash
# The names below are used by the scripts that source this file.
# shellcheck disable=SC2034

# Repository root, whatever the caller's working directory.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT

# The names the architecture contract fixes (docs/architecture.md).
: "${COMPOSE_PROJECT_NAME:=dam-inventory}"
: "${ENV_DIR:=env}"
export COMPOSE_PROJECT_NAME ENV_DIR
LOCAL_BASE_IMAGE=dam-inventory/debian:bookworm
LOCAL_REDIS_IMAGE=dam-inventory/redis:5.0.7
LOCAL_DB_IMAGE=dam-inventory/postgis:15-3
WEB_IMAGE=${WEB_IMAGE:-dam-inventory/web:latest}
export WEB_IMAGE
IMAGES_ENV=$REPO_ROOT/build/images.env

# Progress and errors go to stderr so stdout stays usable by callers.
log() { printf '[%s] %s\n' "${LOG_TAG:-$(basename "$0" .sh)}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG:-$(basename "$0" .sh)}" "$*" >&2; exit 1; }

# ENV_DIR may be relative to the repository (env, env/test) or absolute.
env_dir_path() {
  case $ENV_DIR in
    /*) printf '%s\n' "$ENV_DIR" ;;
    *) printf '%s\n' "$REPO_ROOT/$ENV_DIR" ;;
  esac
}

need_docker() {
  command -v docker >/dev/null || die "docker is not installed: install Docker Engine first"
  docker info >/dev/null 2>&1 || die "the Docker daemon does not answer: start it (systemctl start docker) or check that you may use it (group docker)"
}

# Digest of the files that make an image, so a build is skipped when nothing changed.
inputs_digest() {
  local f
  for f in "$@"; do
    if [[ -f $f ]]; then printf '%s  %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "${f#"$REPO_ROOT"/}"
    else printf '%s\n' "$f"; fi
  done | sha256sum | cut -d' ' -f1
}

# True when IMAGE exists and was built from inputs whose digest is DIGEST.
image_is_current() {
  local image=$1 digest=$2 have
  have=$(docker image inspect -f '{{ index .Config.Labels "org.dam-inventory.inputs" }}' "$image" 2>/dev/null) || return 1
  [[ $have == "$digest" ]]
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# Value of KEY in an env file (last assignment wins, as with compose); empty when absent.
env_file_get() {
  local file=$1 key=$2
  [[ -f $file ]] || return 0
  sed -n "s/^${key}=//p" "$file" | tail -n1
}

# Container id of SERVICE in this compose project (empty when it has none).
service_container() {
  docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
    --filter "label=com.docker.compose.service=$1" | head -n1
}

# State of SERVICE's container: healthy, starting, unhealthy, running (no healthcheck),
# exited, restarting, created, dead, or missing.
service_state() {
  local id status health
  id=$(service_container "$1")
  [[ -n $id ]] || { echo missing; return; }
  read -r status health < <(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
  case $status in
    running) [[ $health == none ]] && echo running || echo "$health" ;;
    *) echo "$status" ;;
  esac
}
