#!/usr/bin/env bash
# Writes ${ENV_DIR}/<service>.env from env/<service>.env.example on the first run, and a random
# strong value for every secret into its own file ${ENV_DIR}/secrets/<name> (git-ignored),
# which compose hands to the containers as a Docker secret (/run/secrets/<name>), so no secret
# sits in a container's environment (`docker inspect`). Never overwrites an existing file:
# your edits and the secrets the data volumes were initialized with must survive.
#
#   scripts/gen-env.sh                                    -> env/*.env, env/secrets/*
#   ENV_DIR=env/test WEB_PORT=18080 scripts/gen-env.sh    -> env/test/... (the test stack)
#
# In the env files a secret appears as NAME_FILE=<host path of its file>, for people and
# host-side tools; compose overrides NAME_FILE with the in-container path.
# Values: a variable of the example that is set in your environment when the file is first
# written wins (e.g. ASGI_PROCESSES=4, or POSTGRES_PASSWORD=... to choose a secret); then the
# secrets are generated; ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS follow WEB_BIND/WEB_PORT;
# everything else is the example's default.
# An env file of an earlier version that holds a secret inline (NAME=value) is migrated: the
# value moves, unchanged, into its secret file and the line becomes NAME_FILE=...
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=gen-env

# Every secret of the stack (docker-compose.yml declares one Docker secret per name).
SECRET_KEYS=(POSTGRES_PASSWORD REDIS_PASSWORD GEOSERVER_PASSWORD SECRET_KEY
  TETHYS_DB_PASSWORD TETHYS_DB_SUPERUSER_PASS PORTAL_SUPERUSER_PASSWORD)

is_secret() {
  local k
  for k in "${SECRET_KEYS[@]}"; do [[ $k == "$1" ]] && return 0; done
  return 1
}

# 40 characters of [A-Za-z0-9] (~238 bits): safe in env files, YAML, URLs and the Redis
# config line, and never mistaken for a number or boolean.
random_secret() {
  python3 -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(40)))'
}

# Host path of KEY's secret file as written in the env files: relative to the repository
# when ENV_DIR is (so it reads the same on every checkout).
secret_ref() { printf '%s/secrets/%s\n' "${ENV_DIR%/}" "${1,,}"; }
secret_path() { printf '%s/secrets/%s\n' "$(env_dir_path)" "${1,,}"; }

# Creates KEY's secret file unless it exists; VALUE (optional) instead of a random one.
# Mode 644 inside a 700 directory: only root on the host can reach it, and the container's
# unprivileged user can read the bind-mounted copy.
ensure_secret_file() {
  local key=$1 value=${2:-} path
  path=$(secret_path "$key")
  [[ -e $path ]] && return 0
  [[ -n $value ]] || value=$(random_secret)
  (umask 022; printf '%s\n' "$value" >"$path.tmp")
  mv "$path.tmp" "$path"
  log "wrote ${path#"$REPO_ROOT"/}"
}

prepare_secrets_dir() {
  local dir; dir=$(env_dir_path)/secrets
  mkdir -p "$dir"
  chmod 700 "$dir"
  # Ignored by git whatever the repository's .gitignore says.
  [[ -f $dir/.gitignore ]] || printf '*\n' >"$dir/.gitignore"
}

# Defaults that depend on where this stack is published, or on which stack it is.
derived_value() {
  local key=$1 port=${WEB_PORT:-8080} bind=${WEB_BIND:-127.0.0.1}
  local hosts="localhost,127.0.0.1"
  [[ $bind == 127.0.0.1 || $bind == 0.0.0.0 || $bind == localhost ]] || hosts+=",$bind"
  case $key in
    ALLOWED_HOSTS) printf '%s\n' "$hosts" ;;
    CSRF_TRUSTED_ORIGINS)
      local h out=()
      IFS=, read -r -a hs <<<"$hosts"
      for h in "${hs[@]}"; do out+=("http://$h:$port"); done
      (IFS=,; printf '%s\n' "${out[*]}") ;;
    # The test stack proves fan-out across three workers (docs/architecture.md).
    ASGI_PROCESSES) [[ $(basename "$ENV_DIR") == test ]] && printf '3\n' || return 1 ;;
    *) return 1 ;;
  esac
}

render() {
  local example=$1 line key value name
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]]; then
      key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
      name=${key%_FILE}
      if [[ $key == *_FILE ]] && is_secret "$name"; then
        ensure_secret_file "$name" "${!name:-}"
        printf '%s_FILE=%s\n' "$name" "$(secret_ref "$name")"
        continue
      fi
      if [[ -n ${!key+set} ]]; then value=${!key}
      elif v=$(derived_value "$key"); then value=$v
      fi
      printf '%s=%s\n' "$key" "$value"
    else
      printf '%s\n' "$line"
    fi
  done <"$example"
}

# An env file written before secrets moved to files: move each inline secret out.
migrate_inline_secrets() {
  local target=$1 key value changed=0
  for key in "${SECRET_KEYS[@]}"; do
    value=$(env_file_get "$target" "$key")
    [[ -n $value ]] || continue
    ensure_secret_file "$key" "$value"
    if [[ $(<"$(secret_path "$key")") != "$value" ]]; then
      die "${target#"$REPO_ROOT"/} has $key inline and $(secret_ref "$key") holds a different value: keep the right one, delete the other"
    fi
    sed -i "s|^${key}=.*|${key}_FILE=$(secret_ref "$key")|" "$target"
    changed=1
  done
  (( ! changed )) || log "moved the inline secrets of ${target#"$REPO_ROOT"/} into $(secret_ref X | sed 's|/x$||')/"
}

# An existing file is kept; say which keys a newer example has that it lacks (upgrades).
report_missing_keys() {
  local example=$1 target=$2 missing
  missing=$(comm -23 <(grep -oE '^[A-Z][A-Z0-9_]*=' "$example" | sort -u) \
                     <(grep -oE '^[A-Z][A-Z0-9_]*=' "$target" | sort -u) | tr -d '=' | xargs)
  [[ -z $missing ]] || log "note: ${target#"$REPO_ROOT"/} lacks $missing (new in the example; defaults apply)"
}

write_env_file() {
  local example=$1 target=$2 tmp
  tmp=$(mktemp "$target.XXXXXX")
  render "$example" >"$tmp"
  chmod 600 "$tmp"
  mv -n "$tmp" "$target"
  rm -f "$tmp"
  log "wrote ${target#"$REPO_ROOT"/} (mode 600)"
}

main() {
  local dir example name target
  dir=$(env_dir_path)
  mkdir -p "$dir"
  prepare_secrets_dir
  shopt -s nullglob
  local examples=("$REPO_ROOT"/env/*.env.example)
  (( ${#examples[@]} )) || die "no env/*.env.example found in $REPO_ROOT/env"
  for example in "${examples[@]}"; do
    name=$(basename "$example" .example)
    target=$dir/$name
    if [[ -e $target ]]; then
      migrate_inline_secrets "$target"
      report_missing_keys "$example" "$target"
      continue
    fi
    (umask 077; write_env_file "$example" "$target")
  done
  # Every secret compose declares must exist, whichever example names it.
  local key
  for key in "${SECRET_KEYS[@]}"; do ensure_secret_file "$key" "${!key:-}"; done
}

main "$@"
