#!/usr/bin/env bash
# Build the sandbox image astra-sandbox:latest (or $ASTRA_IMAGE).
#
#   sandbox-images/build.sh [--force]
#
# Quick no-op when the image exists (unless --force). The base is the registry's
# debian:bookworm-slim when it is present or can be pulled; otherwise (air-gapped CI) a
# bookworm root filesystem is bootstrapped with debootstrap from the host's apt mirror and
# imported as astra-base:bookworm. Needs no stdin.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${ASTRA_IMAGE:-astra-sandbox:latest}"
registry_base="debian:bookworm-slim"
local_base="astra-base:bookworm"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "build.sh: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if ! docker info >/dev/null 2>&1; then
  log "cannot reach the Docker engine; run scripts/ensure-docker.sh (or: sudo systemctl start docker)"
  exit 1
fi

# The image records the hash of its recipe: editing the Dockerfile rebuilds it on the next run.
recipe="$(cat "$here/Dockerfile" | sha256sum | cut -c1-16)"
built_recipe="$(docker image inspect -f '{{ index .Config.Labels "astra-run.recipe" }}' "$image" 2>/dev/null || true)"
if [[ $force == 0 ]] && [[ "$built_recipe" == "$recipe" ]]; then
  log "$image is up to date (use --force to rebuild)"
  exit 0
fi

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

log "building $image from $base"
docker build --pull=false --build-arg "BASE=$base" --label "astra-run.recipe=$recipe" -t "$image" "$here" </dev/null
log "built $image"
