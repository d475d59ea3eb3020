#!/usr/bin/env bash
# Creates or refreshes .venv from requirements/dev.txt; a no-op when nothing changed.
# Usage: scripts/venv.sh   (prints the venv's bin directory on stdout)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp=$venv/.requirements.sha256
want=$(cat requirements/web.txt requirements/dev.txt | sha256sum | cut -d' ' -f1)

if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "[venv] installing requirements/dev.txt into $venv (first time: about a minute)" >&2
  [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet -r requirements/dev.txt >&2
  echo "$want" >"$stamp"
fi
echo "$PWD/$venv/bin"
