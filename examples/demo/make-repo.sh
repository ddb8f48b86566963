#!/usr/bin/env bash
# (Re)create examples/demo/.demo-repo: a git repository holding project/ in one commit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$here/.demo-repo"
rm -rf "$repo"
cp -r "$here/project" "$repo"
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=demo -c user.email=demo@example.invalid add -A
git -C "$repo" -c user.name=demo -c user.email=demo@example.invalid commit -q -m "more_iter: interleave_evenly"
echo "==> demo repository: $repo (base commit $(git -C "$repo" rev-parse --short HEAD))"
