#!/usr/bin/env bash
# `make bench`: the fan-out benchmark, ours against the reference setup of the Tethys docs.
#
# Brings up two throw-away stacks from the same web image, one after the other, on fresh
# volumes (their own projects, ports and env files under build/bench/; the dev and test stacks
# are not touched):
#   ours  project dam-inventory-bench-ours, 127.0.0.1:18090, the stack's defaults
#         (ASGI_PROCESSES from env/web.env.example, nginx spreading sockets over the workers,
#         core Redis layer with the image's capacity and group expiry)
#   ref   project dam-inventory-bench-ref, 127.0.0.1:18091, what the Tethys docs configure:
#         one daphne process (ASGI_PROCESSES=1), core Redis layer with channels_redis' defaults
#         (capacity 100, group_expiry 86400) and the docs' CHANNEL_LAYERS_CONFIG, the
#         tutorial's consumer (DAM_INVENTORY_FANOUT=per-socket) and no connection pool
# For each: first start to healthy, restart to healthy, then tests/bench/fanout.py
# (N clients, steady adds, then the 50 dams/s burst). Finally tests/bench/report.py prints the
# ratios and the targets, and writes docs/benchmarks.md and its plot.
#
# Knobs (env): BENCH_CLIENTS (100,1000,5000), BENCH_DAMS (20), BENCH_RATE (2 dams/s),
# BENCH_BURST_CLIENTS (100), BENCH_BURST_RATE (50), BENCH_BURST_SECONDS (30),
# BENCH_CONFIGS ("ours ref"), BENCH_OURS_ASGI_PROCESSES (the example's default),
# BENCH_KEEP=1 (leave the stacks up), BENCH_NO_REPORT=1 (results JSON only).
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=bench

OUT=$REPO_ROOT/build/bench
BENCH_CLIENTS=${BENCH_CLIENTS:-100,1000,5000}
BENCH_CONFIGS=${BENCH_CONFIGS:-ours ref}
MAX_CLIENTS=$(tr ',' '\n' <<<"$BENCH_CLIENTS" | sort -n | tail -n1)

warn_if_busy() {
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" 'BEGIN { exit !(l > 1.5) }'; then
    log "WARNING: load average is $load on $(nproc) cores: other work (image builds?) will skew the numbers"
  fi
}

config_port() { case $1 in ours) echo 18090 ;; ref) echo 18091 ;; *) die "unknown config $1 (ours or ref)" ;; esac; }

# Runs compose for one bench stack.
bench_compose() {
  local cfg=$1; shift
  COMPOSE_PROJECT_NAME=dam-inventory-bench-$cfg ENV_DIR=build/bench/$cfg/env \
    WEB_PORT=$(config_port "$cfg") "$REPO_ROOT/scripts/compose.sh" "$@"
}

# Fresh env files (new secrets, matching the fresh volumes) with the config's settings.
write_env() {
  local cfg=$1 dir asgi
  dir=$OUT/$cfg/env
  rm -rf "$dir"
  if [[ $cfg == ref ]]; then asgi=1
  else asgi=${BENCH_OURS_ASGI_PROCESSES:-$(env_file_get "$REPO_ROOT/env/web.env.example" ASGI_PROCESSES)}
  fi
  # Every dam of the run must be accepted: no inventory limit. The load generator reaches the
  # portal as web:8080 on the stack's network, so `web` is an allowed host (and origin).
  ENV_DIR=build/bench/$cfg/env WEB_PORT=$(config_port "$cfg") ASGI_PROCESSES=$asgi \
    ALLOWED_HOSTS=localhost,127.0.0.1,web DAM_INVENTORY_MAX_DAMS='' "$REPO_ROOT/scripts/gen-env.sh"
  if [[ $cfg == ref ]]; then
    # The docs' value, and channels_redis' own defaults instead of the image's.
    cat >>"$dir/web.env" <<'EOF'

# make bench: the reference setup of the Tethys docs ("Django Channels Layer" page)
CHANNEL_LAYERS_BACKEND=channels_redis.core.RedisChannelLayer
CHANNEL_LAYERS_CONFIG={'hosts':[{'host': 'redis', 'port': 6379}]}
CHANNEL_LAYERS_CAPACITY=100
CHANNEL_LAYERS_GROUP_EXPIRY=86400
# ...the tutorial's consumer (each socket joins the group) and Django's default of a database
# connection per request: what the docs' setup has, where ours has a fan-out per process and a pool.
DAM_INVENTORY_FANOUT=per-socket
TETHYS_DB_POOL_MAX_SIZE=0
EOF
  fi
  log "$cfg: ASGI_PROCESSES=$asgi, env in build/bench/$cfg/env"
}

web_health() {
  local id
  id=$(docker ps -aq --filter "label=com.docker.compose.project=dam-inventory-bench-$1" \
         --filter label=com.docker.compose.service=web | head -n1)
  [[ -n $id ]] || { echo missing; return; }
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id"
}

remove_stack() {
  local cfg=$1
  [[ -f $OUT/$cfg/env/web.env ]] || return 0
  log "$cfg: removing the bench stack and its volumes"
  bench_compose "$cfg" down -v --remove-orphans >/dev/null 2>&1 || true
}

# Seconds, with a decimal, since an epoch-ns stamp.
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

start_and_time() {
  local cfg=$1 t0 first restart
  remove_stack "$cfg"
  write_env "$cfg"
  log "$cfg: first start on fresh volumes (make up: migrations, admin, stores)"
  t0=$(date +%s%N)
  COMPOSE_PROJECT_NAME=dam-inventory-bench-$cfg ENV_DIR=build/bench/$cfg/env \
    WEB_PORT=$(config_port "$cfg") "$REPO_ROOT/scripts/up.sh" >"$OUT/$cfg/up.log" 2>&1 ||
    die "$cfg stack did not come up: see $OUT/$cfg/up.log"
  first=$(since "$t0")
  log "$cfg: first start to healthy ${first}s"

  log "$cfg: restart of web to healthy"
  t0=$(date +%s%N)
  bench_compose "$cfg" restart web >/dev/null 2>&1
  local deadline=$(( SECONDS + 180 ))
  until [[ $(web_health "$cfg") == healthy ]]; do
    (( SECONDS < deadline )) || die "$cfg: web not healthy 180 s after a restart"
    sleep 0.5
  done
  restart=$(since "$t0")
  log "$cfg: restart to healthy ${restart}s"
  printf '{"first_start_s": %s, "restart_s": %s}\n' "$first" "$restart" >"$OUT/$cfg/startup.json"
}

# The load generator: fanout.py in a container of the web image (its Python has requests; the
# WebSocket client is tests/bench/rawws.py, stdlib only), on the stack's external network and
# in the web container's pid namespace (to read the workers' memory). No docker-proxy in the
# path, and the load stays between the stack's own containers.
run_fanout() {
  local cfg=$1 web nofile
  web=$(docker ps -q --filter "label=com.docker.compose.project=dam-inventory-bench-$cfg" \
          --filter label=com.docker.compose.service=web | head -n1)
  [[ -n $web ]] || die "$cfg: no running web container"
  # One descriptor per client, plus the senders' and Python's own.
  nofile=$(( MAX_CLIENTS + 1024 ))
  # The admin login goes in the environment: the env files are root's only.
  PORTAL_SUPERUSER_NAME=$(env_file_get "$OUT/$cfg/env/web.env" PORTAL_SUPERUSER_NAME) \
  PORTAL_SUPERUSER_PASSWORD=$(<"$OUT/$cfg/env/secrets/portal_superuser_password") \
  docker run --rm --name "dam-inventory-bench-$cfg-loadgen" \
    --network "dam-inventory-bench-${cfg}_external" --pid "container:$web" \
    --ulimit "nofile=$nofile:$nofile" --cap-drop ALL --security-opt no-new-privileges \
    -e PORTAL_SUPERUSER_NAME -e PORTAL_SUPERUSER_PASSWORD -e PYTHONDONTWRITEBYTECODE=1 \
    -v "$REPO_ROOT/tests:/bench/tests:ro" \
    --entrypoint /opt/tethys-venv/bin/python "$WEB_IMAGE" \
    /bench/tests/bench/fanout.py --url http://web:8080 --project - \
    --label "$cfg" --clients "$BENCH_CLIENTS" \
    --dams "${BENCH_DAMS:-20}" --rate "${BENCH_RATE:-2}" \
    --burst-clients "${BENCH_BURST_CLIENTS:-100}" --burst-rate "${BENCH_BURST_RATE:-50}" \
    --burst-seconds "${BENCH_BURST_SECONDS:-30}" --out - >"$OUT/$cfg/fanout.json" ||
    die "$cfg: the load generator failed (its log is above)"
}

# Interrupted or failed: do not leave bench stacks (and their 5,000 sockets) behind.
on_exit() {
  local rc=$? cfg
  [[ -z ${BENCH_KEEP:-} ]] || return 0
  if (( rc != 0 )); then
    for cfg in $BENCH_CONFIGS; do remove_stack "$cfg"; done
  fi
}

main() {
  trap on_exit EXIT
  need_docker
  cd "$REPO_ROOT"
  PY=$("$REPO_ROOT/scripts/venv.sh")/python
  warn_if_busy
  mkdir -p "$OUT"
  # Build (or check) the images first, so the first-start time below is the start alone.
  "$REPO_ROOT/scripts/images.sh"
  local cfg
  for cfg in $BENCH_CONFIGS; do
    mkdir -p "$OUT/$cfg"
    start_and_time "$cfg"
    run_fanout "$cfg"
    [[ -n ${BENCH_KEEP:-} ]] || remove_stack "$cfg"
  done
  docker image inspect -f '{"image": "{{index .RepoTags 0}}", "bytes": {{.Size}}}' "$WEB_IMAGE" >"$OUT/image.json"
  [[ -n ${BENCH_NO_REPORT:-} ]] || "$PY" "$REPO_ROOT/tests/bench/report.py" "$OUT"
}

main "$@"
