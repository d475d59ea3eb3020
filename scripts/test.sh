#!/usr/bin/env bash
# `make test` (and CI through .ci/run): every suite, in this order
#   lint (scripts/lint.sh), unit (scripts/unit.sh), images (scripts/images.sh: builds what is
#   missing, also the web image the next suite renders in), salt (scripts/check-salt.sh),
#   then a TEST stack (project dam-inventory-test, env/test, 127.0.0.1:18080, ASGI_PROCESSES=3)
#   for infra, e2e, browser, faults (when present) and backup (last: it re-creates the stack),
#   then the stack is removed with its volumes (always, also on failure or Ctrl-C).
# It installs what it needs on a fresh Debian machine (apt: chromium, debootstrap, PostgreSQL +
# PostGIS; pip: scripts/venv.sh), runs every suite even after a failure, and ends with a table
# per suite and the line CI reads: "N passed, N failed, N skipped".
# It fails when a test failed, when a suite ran no test, or when a test was skipped for another
# reason than GeoServer (the one component that cannot exist on this machine kind).
#
# Options (env): SUITES="infra e2e" runs only those suites; KEEP_STACK=1 leaves the stack up.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export ENV_DIR=env/test COMPOSE_PROJECT_NAME=dam-inventory-test WEB_PORT=18080 WEB_BIND=127.0.0.1
export ASGI_PROCESSES=3 # the e2e suite proves fan-out across exactly three workers
TEST_ASGI_PROCESSES=$ASGI_PROCESSES
RESULTS=$ROOT/build/test-results
ALL_SUITES=(lint unit images salt infra e2e browser faults backup)
STACK_SUITES=" infra e2e browser faults backup "
DEBIAN_PACKAGES=(
  chromium                  # the browser suite drives Debian's build (never `playwright install`)
  debootstrap               # the registry-free base image (images/base/build.sh)
  postgresql-15             # the unit suite's local cluster (scripts/local-postgis.sh)
  postgresql-15-postgis-3
)

log() { printf '[test] %s\n' "$*" >&2; }
die() { printf '[test] ERROR: %s\n' "$*" >&2; exit 1; }

declare -A RAN PASSED FAILED SKIPPED NOTE
STACK_STARTED=0

# ------------------------------------------------------------------------------ setup
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else die "need root to run: $* (run make test as root, or install the packages first)"
  fi
}

install_debian_packages() {
  local pkg missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]} (first time only, a minute or two)"
  as_root apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get could not install ${missing[*]}: check the apt sources and the network"
}

setup_python() {
  local bin
  bin=$(scripts/venv.sh) || die "scripts/venv.sh failed: see the pip output above"
  export PATH="$bin:$PATH"
  PYTEST=$bin/pytest
}

wanted() { [[ " ${SUITES:-${ALL_SUITES[*]}} " == *" $1 "* ]]; }

# ------------------------------------------------------------------------------ counting
# Reads a junit xml: prints "tests passed failed skipped", and lists failures and skips.
# A skip whose reason does not name GeoServer is counted as a failure.
junit_counts() {
  python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = root.iter("testcase")
tests = passed = failed = skipped = 0
for case in cases:
    tests += 1
    name = f"{case.get('classname', '')}::{case.get('name')}"
    bad = case.find("failure") if case.find("failure") is not None else case.find("error")
    skip = case.find("skipped")
    if bad is not None:
        failed += 1
        print(f"    FAILED  {name}: {(bad.get('message') or '').splitlines()[0][:200] if bad.get('message') else ''}", file=sys.stderr)
    elif skip is not None:
        reason = skip.get("message") or ""
        if "geoserver" in reason.lower():
            skipped += 1
            print(f"    SKIPPED {name}: {reason[:200]}", file=sys.stderr)
        else:
            failed += 1
            print(f"    FAILED  {name}: skipped without an allowed reason: {reason[:200]}", file=sys.stderr)
    else:
        passed += 1
print(tests, passed, failed, skipped)
PY
}

record() { # suite ran passed failed skipped [note]
  RAN[$1]=$2 PASSED[$1]=$3 FAILED[$1]=$4 SKIPPED[$1]=$5 NOTE[$1]=${6:-}
}

record_from_junit() { # suite xml exit-code
  local suite=$1 xml=$2 rc=$3 counts ran passed failed skipped note=""
  if [[ -s $xml ]] && counts=$(junit_counts "$xml"); then
    read -r ran passed failed skipped <<<"$counts"
  else
    ran=0 passed=0 failed=0 skipped=0
  fi
  if ((ran == 0)); then
    failed=$((failed + 1)) note="ran no test (exit $rc)"
  elif ((rc != 0 && failed == 0)); then
    failed=1 note="exit $rc with no failed test: see $RESULTS/$suite.log"
  fi
  record "$suite" "$ran" "$passed" "$failed" "$skipped" "$note"
}

# A suite that is one script (lint, salt): one check, passed or failed; if the script runs
# pytest, its junit xml (through PYTEST_ADDOPTS) gives the real counts.
run_script_suite() { # suite script [args]
  local suite=$1 xml=$RESULTS/$1.xml rc=0
  shift
  if [[ ! -x $1 ]]; then
    record "$suite" 1 0 1 0 "$1 is missing"
    log "$suite: $1 is missing"
    return
  fi
  rm -f "$xml"
  log "$suite: $* (log: build/test-results/$suite.log)"
  PYTEST_ADDOPTS="--junitxml=$xml ${PYTEST_ADDOPTS:-}" "$@" </dev/null 2>&1 | tee "$RESULTS/$suite.log" || rc=${PIPESTATUS[0]}
  if [[ -s $xml ]]; then
    record_from_junit "$suite" "$xml" "$rc"
  elif ((rc == 0)); then
    record "$suite" 1 1 0 0
  else
    record "$suite" 1 0 1 0 "exit $rc: see build/test-results/$suite.log"
  fi
}

run_pytest_suite() { # suite directory
  local suite=$1 dir=$2 xml=$RESULTS/$1.xml rc=0
  rm -f "$xml"
  log "$suite: pytest $dir (log: build/test-results/$suite.log)"
  "$PYTEST" -c tests/pytest-stack.ini "$dir" --junitxml="$xml" </dev/null 2>&1 \
    | tee "$RESULTS/$suite.log" || rc=${PIPESTATUS[0]}
  # exit 5 = no test collected: counted as a failure by record_from_junit (ran 0)
  record_from_junit "$suite" "$xml" "$rc"
}

fail_suite() { # suite reason
  record "$1" 1 0 1 0 "$2"
  log "$1: FAILED: $2"
}

# ------------------------------------------------------------------------------ the stack
stack_down() {
  scripts/compose.sh down --volumes --remove-orphans --timeout 30 >/dev/null 2>&1 || true
}

# env/test/*.env are generated once (scripts/gen-env.sh via up.sh) and kept; whatever was
# edited since, the test stack must run three workers.
ensure_test_env() {
  local web=$ENV_DIR/web.env
  [[ -x scripts/gen-env.sh ]] && ASGI_PROCESSES=$TEST_ASGI_PROCESSES scripts/gen-env.sh >/dev/null
  [[ -f $web ]] || return 0
  if grep -q '^ASGI_PROCESSES=' "$web"; then
    sed -i "s/^ASGI_PROCESSES=.*/ASGI_PROCESSES=$TEST_ASGI_PROCESSES/" "$web"
  else
    printf 'ASGI_PROCESSES=%s\n' "$TEST_ASGI_PROCESSES" >>"$web"
  fi
}

save_stack_logs() {
  scripts/compose.sh ps >"$RESULTS/stack-ps.txt" 2>&1 || true
  scripts/compose.sh logs --no-color --timestamps >"$RESULTS/stack.log" 2>&1 || true
}

teardown_stack() {
  ((STACK_STARTED)) || return 0
  STACK_STARTED=0
  save_stack_logs
  if [[ ${KEEP_STACK:-0} == 1 ]]; then
    log "KEEP_STACK=1: the test stack stays up (remove it: ENV_DIR=$ENV_DIR COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME scripts/compose.sh down -v)"
  else
    log "removing the test stack and its volumes"
    stack_down
  fi
}

# Normally main tears the stack down before the summary (so the summary is the last output);
# this covers a failure or Ctrl-C on the way.
cleanup() {
  local rc=$?
  teardown_stack
  exit "$rc"
}

DOCKER_MISSING="Docker is not usable here (docker info fails): install and start Docker Engine; the image and stack suites cannot run without it"
docker_usable() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

stack_up() {
  if ! docker_usable; then
    STACK_ERROR=$DOCKER_MISSING
    return 1
  fi
  ensure_test_env
  log "removing any leftover test stack, then bringing a fresh one up (first time: image builds, several minutes)"
  stack_down
  STACK_STARTED=1
  local rc=0
  scripts/up.sh </dev/null 2>&1 | tee "$RESULTS/up.log" || rc=${PIPESTATUS[0]}
  if ((rc != 0)); then
    STACK_ERROR="scripts/up.sh failed (exit $rc): see build/test-results/up.log and stack.log"
    save_stack_logs
    log "last lines of the stack's logs:"
    tail -n 60 "$RESULTS/stack.log" >&2 || true
    return 1
  fi
}

run_stack_suites() {
  local suite dir
  for suite in infra e2e browser faults backup; do
    wanted "$suite" || continue
    dir=tests/$suite
    if [[ $suite == faults ]] && ! compgen -G "tests/faults/test_*.py" >/dev/null; then
      continue # the fault suite is optional until it lands
    fi
    if [[ -n ${STACK_ERROR:-} ]]; then
      fail_suite "$suite" "$STACK_ERROR"
      continue
    fi
    run_pytest_suite "$suite" "$dir"
    if ((FAILED[$suite] > 0)); then save_stack_logs; cp "$RESULTS/stack.log" "$RESULTS/stack-after-$suite.log"; fi
  done
}

# ------------------------------------------------------------------------------ summary
summary() {
  local suite t_ran=0 t_passed=0 t_failed=0 t_skipped=0 empty=0
  printf '\n%-8s %6s %7s %7s %8s  %s\n' suite ran passed failed skipped note
  for suite in "${ALL_SUITES[@]}"; do
    [[ -n ${RAN[$suite]+set} ]] || continue
    printf '%-8s %6s %7s %7s %8s  %s\n' "$suite" "${RAN[$suite]}" "${PASSED[$suite]}" \
      "${FAILED[$suite]}" "${SKIPPED[$suite]}" "${NOTE[$suite]}"
    t_ran=$((t_ran + RAN[$suite])) t_passed=$((t_passed + PASSED[$suite]))
    t_failed=$((t_failed + FAILED[$suite])) t_skipped=$((t_skipped + SKIPPED[$suite]))
    ((RAN[$suite] > 0)) || empty=1
  done
  printf '%-8s %6s %7s %7s %8s\n' total "$t_ran" "$t_passed" "$t_failed" "$t_skipped"
  printf 'junit xml and logs: build/test-results/\n'
  printf '%d passed, %d failed, %d skipped\n' "$t_passed" "$t_failed" "$t_skipped"
  ((t_failed == 0 && empty == 0 && t_ran > 0))
}

main() {
  mkdir -p "$RESULTS"
  rm -f "$RESULTS"/*.xml "$RESULTS"/*.log
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  local started=$SECONDS
  install_debian_packages
  setup_python
  wanted lint && run_script_suite lint scripts/lint.sh
  wanted unit && run_script_suite unit scripts/unit.sh
  if wanted images || wanted salt; then
    if docker_usable; then
      run_script_suite images scripts/images.sh
    else
      fail_suite images "$DOCKER_MISSING"
    fi
  fi
  wanted salt && run_script_suite salt scripts/check-salt.sh
  local suite need_stack=0
  for suite in $STACK_SUITES; do wanted "$suite" && need_stack=1; done
  if ((need_stack)); then
    stack_up || log "the test stack did not come up: ${STACK_ERROR}"
    run_stack_suites
    teardown_stack
  fi
  log "finished in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
  summary
}

main "$@"
