#!/usr/bin/env bash
# Writes ${ENV_DIR}/<service>.env from env/<service>.env.example on the first run, with a
# random strong value for every secret, and never touches a file that already exists (your
# edits and the secrets the data volumes were initialized with must survive).
#
#   scripts/gen-env.sh                                    -> env/*.env
#   ENV_DIR=env/test WEB_PORT=18080 scripts/gen-env.sh    -> env/test/*.env (the test stack)
#
# Values: a variable of the example that is set in your environment when the file is first
# written wins (e.g. ASGI_PROCESSES=4); then the secrets are generated; ALLOWED_HOSTS and
# CSRF_TRUSTED_ORIGINS follow WEB_BIND/WEB_PORT; everything else is the example's default.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=gen-env

# The keys generated when the example leaves them empty.
SECRET_KEYS=(POSTGRES_PASSWORD REDIS_PASSWORD GEOSERVER_PASSWORD SECRET_KEY
  TETHYS_DB_PASSWORD TETHYS_DB_SUPERUSER_PASS PORTAL_SUPERUSER_PASSWORD)

is_secret() {
  local k
  for k in "${SECRET_KEYS[@]}"; do [[ $k == "$1" ]] && return 0; done
  return 1
}

# 40 characters of [A-Za-z0-9] (~238 bits): safe unquoted in env files, YAML, URLs and the
# Redis config line, and never mistaken for a number or boolean.
random_secret() {
  python3 -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(40)))'
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
  local example=$1 line key value
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]]; then
      key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
      if [[ -n ${!key+set} ]]; then value=${!key}
      elif is_secret "$key" && [[ -z $value ]]; then value=$(random_secret)
      elif v=$(derived_value "$key"); then value=$v
      fi
      printf '%s=%s\n' "$key" "$value"
    else
      printf '%s\n' "$line"
    fi
  done <"$example"
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
  log "wrote ${target#"$REPO_ROOT"/} (mode 600, new random secrets)"
}

main() {
  local dir example name target
  dir=$(env_dir_path)
  mkdir -p "$dir"
  chmod 700 "$dir"
  shopt -s nullglob
  local examples=("$REPO_ROOT"/env/*.env.example)
  (( ${#examples[@]} )) || die "no env/*.env.example found in $REPO_ROOT/env"
  umask 077
  for example in "${examples[@]}"; do
    name=$(basename "$example" .example)
    target=$dir/$name
    if [[ -e $target ]]; then
      report_missing_keys "$example" "$target"
      continue
    fi
    write_env_file "$example" "$target"
  done
}

main "$@"
