#!/usr/bin/env bash
# Fills build/wheels/ (git-ignored) with every wheel the web image installs, downloaded or built
# on the host. The image build then installs with `--no-index --find-links` and never reaches
# the network for Python packages: HTTPS from inside a build does not trust this machine's
# egress proxy, and an air-gapped builder only needs the wheelhouse copied next to it.
#
#   build/wheels/web    requirements/web.txt (all published as cp311 manylinux wheels)
#   build/wheels/salt   docker/web/salt-requirements.txt (salt itself is an sdist: built here)
#   build/wheels/build  the build backend that turns app/ into a wheel inside the image
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=${WHEELS:-$ROOT/build/wheels}
PYTHON=${PYTHON:-python3}
# The image's interpreter is Debian bookworm's python3.11; glibc 2.36 accepts these tags.
# 3.11.2 exactly (not 3.11): environment markers such as redis-py's
# `python_full_version < "3.11.3"` must resolve as they will in the image.
PLATFORM_ARGS=(--only-binary=:all: --implementation cp --python-version 3.11.2 --abi cp311
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

log() { printf '[wheelhouse] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

check_python() {
  local version
  version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
    || die "no '$PYTHON' on PATH: set PYTHON=/path/to/python3.11"
  [[ $version == 3.11 ]] || die "salt is built here for the image's Python 3.11, but '$PYTHON' is $version: set PYTHON=/path/to/python3.11"
}

download_web() {
  # web-constraints.txt as a requirement here: pip download evaluates markers with the
  # host interpreter (3.11.7), so it would skip what 3.11.2 in the image needs.
  log "portal requirements -> $WHEELS/web"
  mkdir -p "$WHEELS/web"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check "${PLATFORM_ARGS[@]}" \
    -r "$ROOT/requirements/web.txt" -r "$ROOT/docker/web/web-constraints.txt" -d "$WHEELS/web"
}

salt_wheels_complete() {
  # true when every pinned Salt requirement already has a wheel here (an offline dry run)
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --dry-run --ignore-installed \
    --no-index --find-links "$WHEELS/salt" -r "$ROOT/docker/web/salt-requirements.txt" >/dev/null 2>&1
}

build_salt() {
  mkdir -p "$WHEELS/salt"
  if salt_wheels_complete; then
    log "salt wheels complete in $WHEELS/salt"
    return 0
  fi
  log "building salt 3008.3 and its dependencies as wheels (about 3 minutes the first time)"
  # `pip wheel` builds what has no wheel on PyPI (salt, timelib): the host is Debian 12 like
  # the image, so the wheels it builds fit the image.
  "$PYTHON" -m pip wheel --quiet --disable-pip-version-check \
    -r "$ROOT/docker/web/salt-requirements.txt" -w "$WHEELS/salt"
}

# The build backend app/pyproject.toml asks for (its [build-system] requires, pinned there).
app_build_requires() {
  "$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' \
    "$ROOT/app/pyproject.toml"
}

download_build_backend() {
  [[ -f $ROOT/app/pyproject.toml ]] || die "app/pyproject.toml is missing: the image builds the app from app/"
  local reqs
  mapfile -t reqs < <(app_build_requires)
  log "app build backend (${reqs[*]}) -> $WHEELS/build"
  mkdir -p "$WHEELS/build"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    "${reqs[@]}" -d "$WHEELS/build"
}

main() {
  check_python
  download_web
  build_salt
  download_build_backend
  log "done: $(find "$WHEELS" -name '*.whl' | wc -l) wheels in $WHEELS"
}

main "$@"
