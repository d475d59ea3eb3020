#!/usr/bin/env bash
# Renders every Salt state of the web image with `salt-call --local state.show_sls`, inside the
# built image (the Salt and Jinja that really run), and fails on any render error.
# Two passes: the minimal env, and one with every optional branch on (GeoServer, max_dams,
# PubSub layer, a quoted CHANNEL_LAYERS_CONFIG), so no branch goes unrendered.
#   scripts/check-salt.sh            (image: $WEB_IMAGE, default dam-inventory/web:latest)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEB_IMAGE=${WEB_IMAGE:-dam-inventory/web:latest}

log() { printf '[check-salt] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

state_names() {
  # salt/tethys/NAME.sls -> tethys.NAME, plus the top file's own render
  find "$ROOT/salt" -name '*.sls' ! -name top.sls -printf '%P\n' | sed 's/\.sls$//; s#/#.#g' | sort
}

# Runs inside the container. show_sls renders each sls (Jinja + YAML) without applying it; a
# render error names its file. The file templates (portal_config.yml, nginx.conf,
# supervisord.conf) render only when applied: a test=True apply of the file states renders
# them too, and writes nothing.
# shellcheck disable=SC2016
RENDER_ALL='
salt() { salt-call --local --config-dir=/etc/tethys/salt --retcode-passthrough --out=json "$@" 2>&1; }
failed=0
sls_list=$(printf "%s," "$@"); sls_list=${sls_list%,}
if out=$(salt state.show_sls "$sls_list") && ! printf "%s" "$out" | grep -q "Rendering SLS\|rendering error\|Traceback"; then
  for sls in "$@"; do printf "  ok      %s\n" "$sls"; done
else
  printf "  FAILED  show_sls %s\n%s\n" "$sls_list" "$out"; failed=1
fi
if out=$(salt state.show_top); then
  printf "  ok      top.sls\n"
else
  printf "  FAILED  top.sls\n%s\n" "$out"; failed=1
fi
if out=$(salt state.apply tethys.dirs,tethys.portal_config,tethys.nginx,tethys.supervisord test=True); then
  printf "  ok      file templates (test=True apply)\n"
else
  printf "  FAILED  file templates\n%s\n" "$out"; failed=1
fi
exit $failed
'

render_pass() {
  local label=$1; shift
  local states
  mapfile -t states < <(state_names)
  log "pass: $label"
  # Dummy values only: rendering needs them present, nothing connects anywhere.
  docker run --rm --network none --entrypoint bash "${MOUNT_ARGS[@]}" \
    -e SECRET_KEY=render-check-only -e TETHYS_DB_PASSWORD=x -e TETHYS_DB_SUPERUSER_PASS=x \
    "$@" "$WEB_IMAGE" -c "$RENDER_ALL" render-all "${states[@]}"
}

main() {
  # The working tree's states by default (what `make test` is checking); the ones baked into
  # the image with SALT_FROM_IMAGE=1. Jinja, Salt and the map's env always come from the image.
  MOUNT_ARGS=()
  if [[ ${SALT_FROM_IMAGE:-0} != 1 ]]; then
    MOUNT_ARGS=(-v "$(cd "${SALT_DIR:-$ROOT/salt}" && pwd):/srv/salt:ro")
  fi
  command -v docker >/dev/null || die "docker is not installed"
  docker image inspect "$WEB_IMAGE" >/dev/null 2>&1 \
    || die "image $WEB_IMAGE not found: build it with scripts/build-web.sh"
  render_pass "defaults"
  render_pass "every optional branch" \
    -e GEOSERVER_URL=http://geoserver:8181/geoserver/rest/ -e GEOSERVER_PASSWORD=x \
    -e GEOSERVER_APP_SETTING=primary_geoserver -e DAM_INVENTORY_MAX_DAMS=25 \
    -e REDIS_PASSWORD=x -e ASGI_PROCESSES=4 -e ALLOWED_HOSTS=.example.org,localhost \
    -e CHANNEL_LAYERS_BACKEND=channels_redis.pubsub.RedisPubSubChannelLayer \
    -e "CHANNEL_LAYERS_CONFIG=\"{'hosts':[{'host': 'redis', 'port': 6379}]}\""
  log "every state renders"
}

main "$@"
