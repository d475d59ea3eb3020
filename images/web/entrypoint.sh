#!/usr/bin/env bash
# Entrypoint of the web image. `start` (the default command): resolve NAME_FILE secrets, apply
# the Salt states of top.sls (configs from env, a wait for the database, the app's settings),
# then hand PID 1 to supervisord, which runs nginx and ASGI_PROCESSES daphne workers.
# `setup` (the compose file's one-shot setup service): apply salt/setup.sls (roles and
# databases as the server's admin, migrations, portal admin, the app's store) and exit; it is
# the only command that needs POSTGRES_PASSWORD. Any other command runs as given, with
# the same secrets resolved (e.g. `docker run ... dam-inventory/web tethys app_settings list`);
# `salt ARGS...` is salt-call with the image's minion config, e.g. from `docker exec`:
#   tethys-entrypoint salt state.apply test=True
# Defaults are Salt's (salt/defaults.yaml): this script invents none; TETHYS_RUN_DIR comes from
# the image's ENV.
set -Eeuo pipefail

RUN_DIR=${TETHYS_RUN_DIR:?TETHYS_RUN_DIR is not set (the image sets it)}
SALT_CONFIG_DIR=/etc/tethys/salt
# Every secret of the env contract may instead come from a file (docker/compose secrets).
SECRETS=(SECRET_KEY POSTGRES_PASSWORD TETHYS_DB_PASSWORD TETHYS_DB_SUPERUSER_PASS
  PORTAL_SUPERUSER_PASSWORD REDIS_PASSWORD GEOSERVER_PASSWORD EMAIL_HOST_PASSWORD OAUTH_OPTIONS
  BACKUP_DB_PASSWORD)

log() { printf '[entrypoint] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=../file_env.sh
source /usr/local/lib/file_env.sh

resolve_secrets() {
  local name
  for name in "${SECRETS[@]}"; do
    file_env "$name"
  done
}

require_secret_key() {
  # No generated fallback: a key made up here would differ between replicas and vanish with
  # the volume (every session and password-reset link invalid). `python -m stackctl env` makes one.
  [[ -n ${SECRET_KEY:-} ]] || die "SECRET_KEY is not set: set SECRET_KEY or SECRET_KEY_FILE (python -m stackctl env writes one into env/web.env)"
}

check_user() {
  [[ $(id -u) != 0 ]] || die "refusing to run as root: run the image as its 'tethys' user (no --user 0)"
}

clean_run_dir() {
  # A restarted container keeps its filesystem: stale sockets and pid files from the previous
  # run would make daphne, nginx or supervisord refuse to start.
  mkdir -p "$RUN_DIR"
  rm -f "$RUN_DIR"/asgi-*.sock "$RUN_DIR"/asgi-*.sock.lock "$RUN_DIR"/*.pid "$RUN_DIR"/supervisor.sock \
    "$RUN_DIR"/health.json
}

# apply_states WHAT [SLS]: the top file's states, or the sls named.
apply_states() {
  local what=$1 started=$SECONDS
  shift
  log "applying Salt states ($what)"
  # --retcode-passthrough: a failed state fails the start with that state's error instead of
  # leaving a half-configured portal running.
  if ! salt-call --local --config-dir="$SALT_CONFIG_DIR" --retcode-passthrough \
      --state-output=mixed --state-verbose=False --log-level=warning state.apply "$@" </dev/null; then
    die "a Salt state failed (see above): $what not done"
  fi
  log "states applied in $((SECONDS - started)) s"
}

# The states wrote what the workers need (portal_config.yml, mode 600, owner only): no secret
# stays in the environment of the long-running processes, where /proc/PID/environ would show it.
forget_secrets() {
  unset "${SECRETS[@]}"
}

start() {
  check_user
  require_secret_key
  clean_run_dir
  apply_states "configs, database wait, app settings"
  forget_secrets
  log "starting supervisord ($RUN_DIR/supervisord.conf: nginx and the ASGI workers)"
  exec supervisord -c "$RUN_DIR/supervisord.conf"
}

setup() {
  check_user
  require_secret_key
  # sync_mods: an sls applied by name does not load salt/_states by itself (a highstate does)
  apply_states "setup: roles, databases, migrations, portal admin, app store" setup sync_mods=states
  log "setup done"
}

main() {
  resolve_secrets
  if [[ ${1:-start} == start ]]; then
    start
  fi
  if [[ $1 == setup ]]; then
    setup
    exit 0
  fi
  if [[ $1 == salt ]]; then
    shift
    exec salt-call --local --config-dir="$SALT_CONFIG_DIR" "$@"
  fi
  exec "$@"
}

main "$@"
