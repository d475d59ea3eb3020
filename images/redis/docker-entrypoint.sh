#!/usr/bin/env bash
# Starts Redis 5 with a password (REDIS_PASSWORD or REDIS_PASSWORD_FILE) and AOF persistence
# in /data, so channel-layer group membership survives a restart.
# Any other command is run as given.
set -Eeuo pipefail

die() { printf 'redis entrypoint: ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../file_env.sh
source /usr/local/lib/file_env.sh

require_password() {
  file_env REDIS_PASSWORD
  if [[ -z $REDIS_PASSWORD ]]; then
    die "no password: set REDIS_PASSWORD or REDIS_PASSWORD_FILE (Redis 5 has no ACLs: the password is the lock)"
  fi
  # The password travels as one config-file token: refuse what would split or unquote it.
  if [[ $REDIS_PASSWORD =~ [[:space:]\"\'\\] ]]; then
    die "REDIS_PASSWORD must not contain whitespace, quotes or backslashes"
  fi
}

start_redis() {
  shift # redis-server
  # The password goes in through stdin as config text, not argv, so `ps` never shows it.
  exec redis-server - --dir /data --appendonly yes --appendfsync everysec "$@" \
    <<<"requirepass $REDIS_PASSWORD"
}

main() {
  if [[ $# -eq 0 || ${1:0:1} == - ]]; then
    set -- redis-server "$@"
  fi
  if [[ $1 == redis-server ]]; then
    require_password
    start_redis "$@"
  fi
  exec "$@"
}

main "$@"
