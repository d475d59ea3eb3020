#!/usr/bin/env bash
# `make lint`: static checks that need no running stack. Exits non-zero on any finding.
#   compose file: Compose Specification schema (check-jsonschema), `docker-compose config -q`
#                 (and `docker compose config -q` where v2 exists), compose-lint
#   YAML: yamllint (.yamllint)   env examples: dotenv-linter   Dockerfiles: hadolint
#   shell: shellcheck on the stack's scripts (compose, images, env, backup; the image scripts)
# Tools come from the project venv (scripts/venv.sh, pinned in requirements/dev.txt).
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=lint

FAILED=()
# The scripts of the stack (docs/architecture.md: compose, images, env, backups).
STACK_SCRIPTS=(scripts/lib.sh scripts/compose.sh scripts/images.sh scripts/up.sh scripts/clean.sh
  scripts/gen-env.sh scripts/backup.sh scripts/restore.sh scripts/lint.sh
  images/base/build.sh images/redis/build.sh images/redis/docker-entrypoint.sh
  images/redis/redis-healthcheck images/postgis/build.sh images/postgis/docker-entrypoint.sh
  images/postgis/initdb-postgis.sh)

check() {
  local name=$1; shift
  if "$@" >"$TMP/out" 2>&1; then
    log "ok    $name"
  else
    log "FAIL  $name"
    sed 's/^/      /' "$TMP/out" >&2
    FAILED+=("$name")
  fi
}

# compose config needs the env files to exist; lint the examples, not anyone's secrets.
compose_config() {
  ENV_DIR=$TMP/env COMPOSE_PROFILES=geoserver "$@" --project-name lint \
    --file "$REPO_ROOT/docker-compose.yml" config -q
}

prepare_env_copies() {
  mkdir -p "$TMP/env"
  local f
  for f in "$REPO_ROOT"/env/*.env.example; do cp "$f" "$TMP/env/$(basename "$f" .example)"; done
}

main() {
  cd "$REPO_ROOT"
  local bin; bin=$("$REPO_ROOT/scripts/venv.sh")
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  prepare_env_copies

  check "compose schema (compose-spec)" "$bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
  if command -v docker-compose >/dev/null; then
    check "docker-compose config" compose_config docker-compose
  fi
  if docker compose version >/dev/null 2>&1; then
    check "docker compose config" compose_config docker compose
  fi
  check "compose-lint" "$bin/compose-lint" docker-compose.yml
  check "yamllint" "$bin/yamllint" --strict .
  check "dotenv-linter env/*.env.example" "$bin/dotenv-linter" env/*.env.example
  local dockerfiles=()
  mapfile -t dockerfiles < <(ls Dockerfile images/*/Dockerfile 2>/dev/null)
  check "hadolint ${dockerfiles[*]}" "$bin/hadolint" --no-color "${dockerfiles[@]}"
  check "shellcheck (stack scripts)" "$bin/shellcheck" --external-sources --source-path=SCRIPTDIR \
    --shell=bash "${STACK_SCRIPTS[@]}"

  if (( ${#FAILED[@]} )); then
    log "${#FAILED[@]} check(s) failed: ${FAILED[*]}"
    exit 1
  fi
  log "all static checks passed"
}

main "$@"
