#!/usr/bin/env bash
# Quick start, command 1: set everything up and run the demo task end to end - a real git
# worktree, a real Docker sandbox, the scripted demo model (no API key needed), real outputs.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
bash examples/demo/make-repo.sh
echo "==> astra-run run examples/demo/task.yaml   (model: scripted demo, examples/demo/model.yaml)"
.venv/bin/astra-run run examples/demo/task.yaml
code=$?
out=astra-out/demo
echo
echo "==> exit code $code; outputs in $out/:"
ls -l "$out"
echo
echo "==> $out/patch.diff:"
cat "$out/patch.diff"
echo "==> check: the patch applies to the demo repo's base commit"
tmp=$(mktemp -d)
git clone -q examples/demo/.demo-repo "$tmp/repo" && git -C "$tmp/repo" apply --check "$PWD/$out/patch.diff" \
  && echo "    git apply --check: ok"
rm -rf "$tmp"
exit $code
