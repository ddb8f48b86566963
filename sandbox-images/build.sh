#!/usr/bin/env bash
# Build the images of astra-run.
#
#   sandbox-images/build.sh [--force] [sandbox|runner|all]    (default: sandbox)
#   sandbox-images/build.sh --print-base                      (make sure the base exists; print its name)
#
# sandbox: astra-sandbox:latest (or $ASTRA_IMAGE), the image the model's tools run in (Dockerfile).
# runner:  astra-runner:latest (or $ASTRA_RUNNER_IMAGE), astra-run itself with git and the docker
#          CLI, built from this source tree (runner.Dockerfile), for a daemon elsewhere (docs/batch.md).
# Quick no-op when an image is up to date with its recipe (unless --force). The base is the registry's
# debian:bookworm-slim when it is present or can be pulled; otherwise (air-gapped CI) a
# bookworm root filesystem is bootstrapped with debootstrap from the host's apt mirror and
# imported as astra-base:bookworm. Needs no stdin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${ASTRA_IMAGE:-astra-sandbox:latest}"
runner_image="${ASTRA_RUNNER_IMAGE:-astra-runner:latest}"
registry_base="debian:bookworm-slim"
local_base="astra-base:bookworm"
host_ca_bundle="/etc/ssl/certs/ca-certificates.crt"
force=0
targets=()
print_base=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-base) print_base=1 ;;
    sandbox|runner) targets+=("$arg") ;;
    all) targets+=(sandbox runner) ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=(sandbox)

log() { echo "build.sh: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if ! docker info >/dev/null 2>&1; then
  log "cannot reach the Docker engine; run scripts/ensure-docker.sh (or: sudo systemctl start docker)"
  exit 1
fi

# An image records the hash of its recipe (label astra-run.recipe): editing it rebuilds the image.
built_recipe() { docker image inspect -f '{{ index .Config.Labels "astra-run.recipe" }}' "$1" 2>/dev/null || true; }

# The mirror the host's apt uses: deb822 sources first, then the one-line format.
debian_mirror() {
  if [[ -n "${ASTRA_DEBIAN_MIRROR:-}" ]]; then echo "$ASTRA_DEBIAN_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")"
    if [[ -n $uri ]]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } } }' "$f")"
    if [[ -n $uri ]]; then echo "$uri"; return; fi
  done
  return 1
}

bootstrap_base() {
  if ! command -v debootstrap >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing debootstrap"
    apt-get update -qq </dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap </dev/null >/dev/null
  fi
  command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap, or run scripts/ensure-docker.sh)"; exit 1; }
  [[ $(id -u) == 0 ]] || { log "debootstrap needs root"; exit 1; }
  local mirror dir
  mirror="$(debian_mirror)" || { log "no Debian mirror found in /etc/apt (set ASTRA_DEBIAN_MIRROR)"; exit 1; }
  dir="$(mktemp -d /tmp/astra-base.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
  log "bootstrapping bookworm from $mirror into $dir"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
    || { log "debootstrap failed; see $dir.log"; tail -n 20 "$dir.log" >&2; exit 1; }
  rm -f "$dir.log"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import - "$local_base" >/dev/null
  rm -rf "$dir"; trap - EXIT
  log "imported $local_base"
}

base=""
ensure_base() {
  [[ -z $base ]] || return 0
  if have_image "$registry_base"; then
    base="$registry_base"
  elif [[ $force == 0 ]] && have_image "$local_base"; then
    base="$local_base"
  elif timeout 120 docker pull -q "$registry_base" >/dev/null 2>&1; then
    base="$registry_base"
  else
    log "cannot pull $registry_base; building the base locally"
    bootstrap_base
    base="$local_base"
  fi
}

build_sandbox() {
  local recipe
  recipe="$(sha256sum <"$here/Dockerfile" | cut -c1-16)"
  if [[ $force == 0 ]] && [[ "$(built_recipe "$image")" == "$recipe" ]]; then
    log "$image is up to date (use --force to rebuild)"
    return 0
  fi
  ensure_base
  log "building $image from $base"
  docker build --pull=false --build-arg "BASE=$base" --label "astra-run.recipe=$recipe" -t "$image" "$here" </dev/null
  log "built $image"
}

build_runner() {
  # The context: this source tree's package (pyproject.toml, README.md, runner/) and the host's CA
  # bundle for pip in the build stage (empty when the host has none: the base's own is used).
  local ctx recipe
  ctx="$(mktemp -d /tmp/astra-runner-ctx.XXXXXX)"
  mkdir -p "$ctx/src"
  cp "$here/../pyproject.toml" "$here/../README.md" "$ctx/src/"
  tar -C "$here/.." --exclude=__pycache__ --exclude='*.pyc' -c runner | tar -C "$ctx/src" -x
  # The sandbox image's recipe too: a runner can build it next to a daemon that has no copy.
  mkdir -p "$ctx/sandbox-images"
  cp "$here/Dockerfile" "$here/build.sh" "$ctx/sandbox-images/"
  cp "$here/runner.Dockerfile" "$ctx/Dockerfile"
  recipe="$(tar -C "$ctx" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -c . | sha256sum | cut -c1-16)"
  if [[ $force == 0 ]] && [[ "$(built_recipe "$runner_image")" == "$recipe" ]]; then
    rm -rf "$ctx"
    log "$runner_image is up to date (use --force to rebuild)"
    return 0
  fi
  if [[ -r $host_ca_bundle ]]; then cp "$host_ca_bundle" "$ctx/ca-certificates.crt"; else : >"$ctx/ca-certificates.crt"; fi
  ensure_base
  log "building $runner_image from $base"
  if ! docker build --pull=false --build-arg "BASE=$base" --label "astra-run.recipe=$recipe" -t "$runner_image" \
      "$ctx" </dev/null; then
    rm -rf "$ctx"
    exit 1
  fi
  rm -rf "$ctx"
  log "built $runner_image"
}

if [[ $print_base == 1 ]]; then
  ensure_base
  echo "$base"
  exit 0
fi
for target in "${targets[@]}"; do
  "build_$target"
done
