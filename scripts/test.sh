#!/usr/bin/env bash
# Quick start, command 2: set everything up and run the whole test suite, Docker tests included
# (ASTRA_REQUIRE_DOCKER=1: they fail instead of skipping when the engine or image is missing).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
export ASTRA_REQUIRE_DOCKER=1 ASTRA_REQUIRE_ACTIONLINT=1 ASTRA_REQUIRE_CHROMIUM=1
status=0
echo "==> ruff"; .venv/bin/ruff check runner tests bench || status=1
echo "==> mypy --strict runner"; .venv/bin/mypy || status=1
echo "==> pytest"; .venv/bin/pytest -q -p no:cacheprovider "$@" tests || status=1
left=$(docker ps -aq --filter label=astra-run 2>/dev/null | wc -l)
if [ "$left" != 0 ]; then
  echo "FAIL: $left astra-run container(s) left behind:" >&2
  docker ps -a --filter label=astra-run >&2
  status=1
fi
# sandbox.disk's own file systems (runner/diskcap.py): none may outlive its run or test
mounts=$(grep -c '/worktree ' /proc/self/mountinfo); loops=$(losetup -a 2>/dev/null | grep -c 'worktree\.img')
if [ "$((mounts + loops))" != 0 ]; then
  echo "FAIL: worktree file systems or loop devices left behind:" >&2
  grep '/worktree ' /proc/self/mountinfo >&2; losetup -a 2>/dev/null | grep 'worktree\.img' >&2
  status=1
fi
exit $status
